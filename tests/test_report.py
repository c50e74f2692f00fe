"""``botdb report``: the self-contained HTML activity page.

The page is rendered from a :class:`ReportData` built here (pure), checked as text (escaping,
plotly.js inlined once, nothing fetched), loaded in a real headless Chromium with the network
blocked (every chart drawn, no console or page errors, usable at phone width), and bad input
gets typed errors that change nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.analytics import DailyStats, TopChannel, TopEmoji, TopMember
from botdb.analytics.report import (
    ReportData,
    collect_report,
    default_period,
    render_report,
    write_report,
)
from botdb.cli import app
from botdb.cli.report import parse_when

UTC = dt.UTC
SINCE = dt.datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = dt.datetime(2026, 12, 1, tzinfo=UTC)
GENERATED = dt.datetime(2026, 12, 1, 8, 30, tzinfo=UTC)

#: Names a chat user may pick, meant to run script or fetch something if the page trusted them.
HOSTILE = "<script>window.__pwned = 1</script>"
HOSTILE_IMG = '<img src="https://attacker.invalid/x.png" onerror="window.__pwned = 2">'
HOSTILE_LINK = '<a href="javascript:window.__pwned=3">click</a>'
REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_SERVICES = os.environ.get("BOTDB_REQUIRE_SERVICES", "") not in ("", "0", "false")


def sample(**changes: Any) -> ReportData:
    """A month of activity with hostile names everywhere a user can choose one."""
    daily = tuple(
        DailyStats(
            day=dt.date(2026, 11, d),
            messages=10 * d,
            active_members=d % 7 + 1,
            joins=d % 3,
            leaves=d % 2,
            reactions=d,
        )
        for d in range(1, 31)
        if d != 13  # a day without rows: the API may leave quiet days out
    )
    heatmap = tuple(tuple((w + 1) * (h % 12) for h in range(24)) for w in range(7))
    members = (
        TopMember(1, HOSTILE, 120, dt.datetime(2026, 11, 30, 21, 5, tzinfo=UTC)),
        TopMember(2, "Alex", 80, dt.datetime(2026, 11, 29, tzinfo=UTC)),
        TopMember(3, "Alex", 79, dt.datetime(2026, 11, 2, tzinfo=UTC)),  # two bars, one name
        TopMember(4, HOSTILE_IMG, 12, dt.datetime(2026, 11, 3, tzinfo=UTC)),
        TopMember(5, None, 3, dt.datetime(2026, 11, 4, tzinfo=UTC)),
    )
    channels = (
        TopChannel(10, "general", 300),
        TopChannel(11, HOSTILE_LINK, 40),
        TopChannel(12, None, 2),
    )
    emoji = (
        TopEmoji("👍", "👍", None, 50),
        TopEmoji("555", "party<b>blob</b>", 555, 9),
    )
    fields: dict[str, Any] = {
        "guild_id": 42,
        "guild_name": f"Test & {HOSTILE}",
        "since": SINCE,
        "until": UNTIL,
        "generated_at": GENERATED,
        "tz": "Europe/Berlin",
        "daily": daily,
        "heatmap": heatmap,
        "top_members": members,
        "top_channels": channels,
        "top_emoji": emoji,
    }
    fields.update(changes)
    return ReportData(**fields)


def _plotly_js() -> str:
    import plotly.offline

    return str(plotly.offline.get_plotlyjs())


def _without_plotly_js(page: str) -> str:
    js = _plotly_js()
    assert page.count(js) == 1
    return page.replace(js, "")


# -- the page as text ------------------------------------------------------------------------


def test_every_user_string_is_escaped_in_html_and_chart_data() -> None:
    page = _without_plotly_js(render_report(sample()))
    for name in (HOSTILE, HOSTILE_IMG, HOSTILE_LINK, "party<b>blob</b>"):
        assert name not in page
    # In the HTML: entities; in the charts' JSON: no "<" at all (plotly writes \u003c).
    assert "<h1>Test &amp; &lt;script&gt;window.__pwned = 1&lt;/script&gt;</h1>" in page
    assert "<td>&lt;img src=&quot;https://attacker.invalid/x.png&quot;" in page
    assert "<script>window.__pwned" not in page
    assert "<title>Test &amp; &lt;script&gt;" in page


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_plotly_js_is_inlined_once_and_nothing_is_loaded_from_elsewhere() -> None:
    page = render_report(sample())
    rest = _without_plotly_js(page)  # asserts exactly one copy
    tags = _Tags(page).tags
    names = [tag for tag, _ in tags]
    assert names.count("script") == 1 + 7  # plotly.js, then one per chart
    assert "link" not in names
    assert "img" not in names
    assert "iframe" not in names
    fetching = {"src", "href", "srcset", "action", "data", "poster", "background"}
    assert [(tag, attrs) for tag, attrs in tags if fetching & set(attrs)] == []
    assert all(
        not set(attrs)
        - {"class", "id", "style", "lang", "charset", "name", "content", "data-chart"}
        for _, attrs in tags
    )  # no on* handlers
    assert rest.count("Plotly.newPlot(") == 7


def test_each_chart_is_one_div_with_its_own_plot_call() -> None:
    page = render_report(sample())
    for chart in (
        "messages",
        "heatmap",
        "members",
        "channels",
        "reactions",
        "emoji",
        "joins",
    ):
        assert page.count(f'id="chart-{chart}"') == 1
        assert f'Plotly.newPlot(                        "chart-{chart}"' in page


def test_render_is_pure() -> None:
    assert render_report(sample()) == render_report(sample())


def test_header_shows_the_guild_and_the_period_in_its_time_zone() -> None:
    midnight = dt.datetime(2026, 11, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    data = sample(since=midnight, until=midnight + dt.timedelta(days=30), tz="Europe/Berlin")
    page = render_report(data)
    assert "Activity from 2026-11-01 to 2026-11-30 (Europe/Berlin)" in page
    odd = sample(since=SINCE, until=UNTIL, tz="Europe/Berlin")  # midnight UTC is 01:00 there
    assert "Activity from 2026-11-01 01:00 to 2026-12-01 01:00 (Europe/Berlin)" in (
        render_report(odd)
    )
    assert "Made by botdb on 2026-12-01 09:30 (Europe/Berlin). Guild id 42." in page


def test_a_guild_without_activity_gets_a_page_saying_so() -> None:
    empty = ReportData(
        guild_id=7, guild_name=None, since=SINCE, until=UNTIL, generated_at=GENERATED
    )
    assert not empty.has_data
    page = render_report(empty)
    assert 'id="no-data"' in page
    assert "No messages, reactions, joins or leaves were recorded" in page
    assert "<h1>Guild 7</h1>" in page
    assert "Plotly" not in page  # no charts, so no 4.8 MB of plotly.js either
    assert len(page) < 10_000


def test_sections_without_rows_say_so_instead_of_an_empty_chart() -> None:
    data = sample(
        daily=(DailyStats(dt.date(2026, 11, 3), 5, 2, 0, 0, 0),),
        top_emoji=(),
    )
    page = render_report(data)
    assert "No reactions in this period." in page
    assert "No emoji used in this period." in page
    assert "Nobody joined or left in this period." in page
    for absent in ("reactions", "emoji", "joins"):
        assert f'id="chart-{absent}"' not in page
    for present in ("messages", "heatmap", "members", "channels"):
        assert f'id="chart-{present}"' in page


def test_summary_cards_add_up_the_days() -> None:
    data = sample()
    page = render_report(data)
    messages = sum(d.messages for d in data.daily)
    assert f"<b>{messages:,}</b><span>messages</span>" in page
    assert "<b>2026-11-30</b><span>busiest day (300 messages)</span>" in page
    assert "<b>Sun 11:00</b><span>busiest hour (Europe/Berlin)</span>" in page


# -- ReportData and the period: typed errors ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"since": dt.datetime(2026, 11, 1)}, errors.DataError, "since is a naive datetime"),
        ({"until": dt.datetime(2026, 12, 1)}, errors.DataError, "until is a naive datetime"),
        ({"since": UNTIL, "until": SINCE}, errors.DataError, "is after until"),
        ({"since": "2026-11-01"}, errors.ArgumentError, "since must be a datetime"),
        ({"guild_id": "42"}, errors.ArgumentError, "guild_id must be an int"),
        ({"guild_id": True}, errors.ArgumentError, "guild_id must be an int"),
        ({"tz": "Mars/Olympus"}, errors.DataError, "unknown time zone"),
        ({"heatmap": ((0,) * 24,) * 6}, errors.DataError, "7 rows"),
        ({"heatmap": ((0,) * 23,) * 7}, errors.DataError, "24 hourly counts"),
    ],
)
def test_report_data_refuses_bad_values(
    changes: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        sample(**changes)


def test_default_period_is_the_last_days_up_to_the_end_of_today_in_the_zone() -> None:
    now = dt.datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already Dec 1 in Berlin
    since, until = default_period(days=7, tz="Europe/Berlin", now=now)
    assert until.isoformat() == "2026-12-02T00:00:00+01:00"
    assert until - since == dt.timedelta(days=7)
    start = dt.datetime(2026, 11, 1, tzinfo=UTC)
    assert default_period(since=start, until=UNTIL) == (start, UNTIL)
    with pytest.raises(errors.DataError, match="days must be at least 1"):
        default_period(days=0)
    with pytest.raises(errors.DataError, match="naive"):
        default_period(until=dt.datetime(2026, 12, 1))


def test_without_plotly_the_error_names_the_extra() -> None:
    code = (
        "import sys, datetime as dt\n"
        "sys.modules['plotly'] = None  # as if the extra were not installed\n"
        "from botdb.analytics.report import ReportData, render_report\n"
        "t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)\n"
        "try:\n"
        "    render_report(ReportData(guild_id=1, guild_name=None, since=t, until=t,\n"
        "                             generated_at=t))\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingDependencyError")
    assert "pip install 'botdb[report]'" in out.stdout


def _hidden_files(directory: Path) -> list[str]:
    """Temporary files a failed write could have left behind (``.report.html.tmp-…``)."""
    return [p.name for p in directory.rglob(".*")]


# -- write_report: bad input is refused before anything is written -------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"since": dt.datetime(2026, 11, 1)}, errors.DataError),
        ({"until": dt.datetime(2026, 12, 1)}, errors.DataError),
        ({"since": UNTIL, "until": SINCE}, errors.DataError),
        ({"tz": "Nowhere/Else"}, errors.DataError),
        ({"days": 0}, errors.DataError),
    ],
)
async def test_write_report_refuses_bad_arguments_and_leaves_the_file(
    db: botdb.Database, tmp_path: Path, options: dict[str, Any], error: type[Exception]
) -> None:
    out = tmp_path / "report.html"
    out.write_text("the old page")
    with pytest.raises(error):
        await write_report(db, out, 42, **options)
    assert out.read_text() == "the old page"
    assert _hidden_files(tmp_path) == []


@pytest.mark.parametrize("where", ["missing-dir", "parent-is-a-file", "a-directory"])
async def test_an_unwritable_path_is_a_configuration_error(
    db: botdb.Database, tmp_path: Path, where: str
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = {
        "missing-dir": tmp_path / "nope" / "report.html",
        "parent-is-a-file": tmp_path / "file" / "report.html",
        "a-directory": tmp_path / "dir",
    }[where]
    with pytest.raises(errors.ConfigurationError, match="cannot write the report to"):
        await write_report(db, path, 42)
    assert (tmp_path / "file").read_text() == "x"
    assert list((tmp_path / "dir").iterdir()) == []
    assert not (tmp_path / "nope").exists()
    assert _hidden_files(tmp_path) == []


# -- the command line ------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_parse_when_reads_dates_in_the_zone_and_times_with_an_offset() -> None:
    berlin = parse_when("--since", "2026-11-01", "Europe/Berlin")
    assert berlin.isoformat() == "2026-11-01T00:00:00+01:00"
    end = parse_when("--until", "2026-11-30", "UTC", end_of_day=True)
    assert end == dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("--since", "2026-11-01T12:00Z", "UTC") == dt.datetime(
        2026, 11, 1, 12, tzinfo=UTC
    )
    with pytest.raises(errors.DataError, match="has no UTC offset"):
        parse_when("--since", "2026-11-01T12:00", "UTC")
    with pytest.raises(errors.DataError, match="is not a date"):
        parse_when("--since", "yesterday", "UTC")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "2026-11-01T12:00"], "DataError: --since '2026-11-01T12:00' has no UTC"),
        (["--since", "last week"], "DataError: --since 'last week' is not a date"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "DataError: since"),
        (["--tz", "Mars/Olympus"], "DataError: unknown time zone: 'Mars/Olympus'"),
        (["--out", "/nonexistent-dir/report.html"], "ConfigurationError: cannot write"),
    ],
)
def test_cli_bad_input_exits_1_with_one_line(
    sqlite_url: str, tmp_path: Path, args: list[str], words: str
) -> None:
    """In a real process with a wide terminal, so that the one line is not wrapped."""
    created = CliRunner().invoke(app, ["init", "--url", sqlite_url])
    assert created.exit_code == 0, created.output
    out = tmp_path / "report.html"
    out.write_text("the old page")
    command = ["report", "--url", sqlite_url, "--out", str(out), *args, "42"]
    completed = subprocess.run(
        [sys.executable, "-m", "botdb", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert words in completed.stderr
    assert out.read_text() == "the old page"
    assert _hidden_files(tmp_path) == []


def test_cli_refuses_a_mistyped_sqlite_url_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    code, output = invoke("report", "--url", f"sqlite:///{path}", "42")
    assert code == 1, output
    assert "does not exist" in " ".join(output.split())
    assert not path.exists()


# -- end to end: rows in the database -> botdb report -> the file --------------------------

GUILD, OTHER_GUILD = 42, 43
GENERAL, SHOWCASE = 10, 11


def _at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


async def _populate(db: botdb.Database) -> None:
    """A small guild in November 2026 (the 2nd is a Monday), with rows around it that the
    report must leave out: another guild, a bot, messages just outside the period."""
    from botdb import models as m

    async with db.session() as session:
        session.add_all(
            [
                m.Guild(id=GUILD, name=f"Guild {HOSTILE}"),
                m.Guild(id=OTHER_GUILD, name="elsewhere"),
                m.User(id=1, username="mallory", display_name=HOSTILE),
                m.User(id=2, username="bob"),
                m.User(id=3, username="helper-bot", is_bot=True),
            ]
        )
        await session.flush()
        session.add_all(
            [
                m.Member(guild_id=GUILD, user_id=2, nick="Bobby"),
                m.Channel(id=GENERAL, guild_id=GUILD, name="general"),
                m.Channel(id=SHOWCASE, guild_id=GUILD, name=HOSTILE_LINK),
                m.Channel(id=99, guild_id=OTHER_GUILD, name="other"),
            ]
        )
        await session.flush()
        messages = [
            # (id, guild, channel, author, created_at, is_bot)
            (101, GUILD, GENERAL, 1, _at(2, 10, 15), False),
            (102, GUILD, GENERAL, 1, _at(2, 10, 45), False),
            (103, GUILD, SHOWCASE, 1, _at(3, 22), False),
            (104, GUILD, GENERAL, 2, _at(3, 9), False),
            (105, GUILD, GENERAL, 2, _at(5, 9, 30), False),
            (106, GUILD, GENERAL, 3, _at(5, 9, 40), True),  # a bot: not counted
            (107, GUILD, GENERAL, 1, _at(31, 23, month=10), False),  # before the period
            (108, GUILD, GENERAL, 1, _at(1, 0, month=12), False),  # at its (excluded) end
            (109, OTHER_GUILD, 99, 2, _at(2, 10), False),  # another guild
        ]
        session.add_all(
            m.Message(
                id=mid, guild_id=g, channel_id=c, author_id=a, created_at=t, is_bot=b, content="hi"
            )
            for mid, g, c, a, t, b in messages
        )
        await session.flush()
        session.add_all(
            [
                m.Reaction(
                    message_id=101, guild_id=GUILD, channel_id=GENERAL, user_id=2,
                    emoji_name="👍", created_at=_at(2, 11),
                ),
                m.Reaction(
                    message_id=101, guild_id=GUILD, channel_id=GENERAL, user_id=3,
                    emoji_name="👍", created_at=_at(2, 12),
                ),
                m.Reaction(
                    message_id=104, guild_id=GUILD, channel_id=GENERAL, user_id=2,
                    emoji_id=777, emoji_name="<b>blob</b>", created_at=_at(3, 10),
                ),
                m.JoinLeaveLog(guild_id=GUILD, user_id=2, event="join", occurred_at=_at(1, 8)),
                m.JoinLeaveLog(guild_id=GUILD, user_id=3, event="leave", occurred_at=_at(20, 12)),
                m.JoinLeaveLog(
                    guild_id=GUILD, user_id=1, event="join", occurred_at=_at(1, 8, month=10)
                ),
            ]
        )  # fmt: skip


def _prepare(url: str) -> None:
    async def main() -> None:
        async with botdb.connect(url) as db:
            await db.create_tables()
            await _populate(db)

    asyncio.run(main())


def test_rows_in_the_database_become_the_report_on_every_backend(
    db_url: str, tmp_path: Path
) -> None:
    _prepare(db_url)
    out = tmp_path / "november.html"
    result = CliRunner().invoke(
        app,
        ["report", "--url", db_url, "--out", str(out), "--since", "2026-11-01",
         "--until", "2026-11-30", "--tz", "UTC", "--json", str(GUILD)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = orjson.loads(result.stdout)
    assert written["has_data"] is True
    assert written["guild_name"] == f"Guild {HOSTILE}"
    assert written["since"] == "2026-11-01T00:00:00+00:00"
    assert written["until"] == "2026-12-01T00:00:00+00:00"
    assert written["bytes"] == out.stat().st_size

    async def collect() -> ReportData:
        async with botdb.connect(db_url) as db:
            return await collect_report(db, GUILD, since=_at(1, 0), until=_at(1, 0, month=12))

    data = asyncio.run(collect())
    assert [(d.day.day, d.messages, d.active_members, d.joins, d.leaves, d.reactions)
            for d in data.daily] == [
        (1, 0, 0, 1, 0, 0),
        (2, 2, 1, 0, 0, 2),
        (3, 2, 2, 0, 0, 1),
        (5, 1, 1, 0, 0, 0),
        (20, 0, 0, 0, 1, 0),
    ]  # fmt: skip
    assert [(t.user_id, t.name, t.messages) for t in data.top_members] == [
        (1, HOSTILE, 3),
        (2, "Bobby", 2),
    ]
    assert [(c.channel_id, c.name, c.messages) for c in data.top_channels] == [
        (GENERAL, "general", 4),
        (SHOWCASE, HOSTILE_LINK, 1),
    ]
    assert [(e.emoji_name, e.emoji_id, e.count) for e in data.top_emoji] == [
        ("👍", None, 2),
        ("<b>blob</b>", 777, 1),
    ]
    expected_heatmap = [[0] * 24 for _ in range(7)]
    expected_heatmap[0][10] = 2  # Monday the 2nd, 10:00
    expected_heatmap[1][9] = expected_heatmap[1][22] = 1  # Tuesday
    expected_heatmap[3][9] = 1  # Thursday the 5th (the bot's message left out)
    assert [list(row) for row in data.heatmap] == expected_heatmap

    page = out.read_text(encoding="utf-8")
    assert f"<h1>Guild {_escaped(HOSTILE)}</h1>" in page
    assert "Activity from 2026-11-01 to 2026-11-30 (UTC)" in page
    for value, label in (("5", "messages"), ("3", "reactions"), ("1", "joins"), ("1", "leaves")):
        assert f"<b>{value}</b><span>{label}</span>" in page
    assert f"<td>{_escaped(HOSTILE)}</td>" in page
    assert "<td>Bobby</td>" in page
    assert f"<td>#{_escaped(HOSTILE_LINK)}</td>" in page
    assert "<td>:&lt;b&gt;blob&lt;/b&gt;:</td>" in page
    rest = _without_plotly_js(page)
    for raw in (HOSTILE, HOSTILE_LINK, "<b>blob</b>"):
        assert raw not in rest


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_an_unknown_guild_gets_a_page_saying_there_is_no_data(db_url: str, tmp_path: Path) -> None:
    _prepare(db_url)
    out = tmp_path / "nobody.html"
    result = CliRunner().invoke(
        app, ["report", "--url", db_url, "--out", str(out), "--json", "--", "-1009999"]
    )
    assert result.exit_code == 0, result.output
    written = orjson.loads(result.stdout)
    assert written["has_data"] is False
    assert written["guild_name"] is None
    page = out.read_text(encoding="utf-8")
    assert 'id="no-data"' in page
    assert "<h1>Guild -1009999</h1>" in page


async def test_an_existing_report_is_replaced_by_a_rename(
    db: botdb.Database, tmp_path: Path
) -> None:
    await _populate(db)
    out = tmp_path / "report.html"
    out.write_text("the old page")
    old_inode = out.stat().st_ino
    period = {"since": _at(1, 0), "until": _at(1, 0, month=12)}
    written = await write_report(db, out, GUILD, **period)
    assert written.path == out
    assert written.size == out.stat().st_size
    assert written.data.has_data
    assert out.stat().st_ino != old_inode  # a new file renamed into place, not rewritten
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    again = await write_report(db, out, GUILD, **period, refresh=False)
    assert again.data.top_members == written.data.top_members
    assert _hidden_files(tmp_path) == []


# -- in a real browser -----------------------------------------------------------------------


def _browser_unavailable(reason: str) -> NoReturn:
    """Skip with the reason shown; in CI (``BOTDB_REQUIRE_SERVICES=1``) fail instead, as a
    missing database server does."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (BOTDB_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium (Debian's) through Playwright, one profile per test."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("Playwright is not installed (pip install 'botdb[dev]')")
    if shutil.which(str(CHROMIUM)) is None:
        _browser_unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",  # required as root
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


class LoadedPage:
    """A report opened with every non-file request aborted and recorded."""

    def __init__(self, context: Any, path: Path, *, width: int) -> None:
        self.blocked: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []

        def route(route: Any) -> None:
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        self.page = context.new_page()
        self.page.set_viewport_size({"width": width, "height": 900})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(path.as_uri(), wait_until="load")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def charts(self) -> dict[str, dict[str, Any]]:
        """Per plot div: traces, points per trace, rendered svg layers, axis tick labels."""
        self.page.wait_for_function(
            "[...document.querySelectorAll('.plotly-graph-div')]"
            ".every(g => g.querySelector('.main-svg') && g._fullLayout)"
        )
        result: dict[str, dict[str, Any]] = self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('.plotly-graph-div')]
                .map(g => [g.id, {
                    traces: g.data.length,
                    drawnTraces: g.querySelectorAll('.trace, .hm').length,
                    svg: g.querySelectorAll('.main-svg').length,
                    bars: g.querySelectorAll('.bars .point').length,
                    heatmapRows: g.data[0].type === 'heatmap' ? g.data[0].z.length : 0,
                    heatmapImage: g.querySelectorAll('.hm image').length,
                    yticks: [...g.querySelectorAll('.ytick text')].map(t => t.textContent),
                    width: g.getBoundingClientRect().width,
                    xrange: g._fullLayout.xaxis.range,
                    drawnWidth: g._fullLayout.width,
                }]))"""
        )
        return result


def _save_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copyfile(shot, artifacts / name)
    assert shot.stat().st_size > 10_000


def test_every_chart_is_drawn_offline_without_errors(browser: Any, tmp_path: Path) -> None:
    data = sample()
    path = tmp_path / "report.html"
    path.write_text(render_report(data), encoding="utf-8")
    loaded = LoadedPage(browser, path, width=1200)
    charts = loaded.charts()
    days = 30  # every day of November: the 13th has no row, and is drawn as a zero
    assert len(data.daily) == 29
    expected = {
        "chart-messages": (2, days),  # bars and the active-members line
        "chart-heatmap": (1, 0),
        "chart-members": (1, len(data.top_members)),
        "chart-channels": (1, len(data.top_channels)),
        "chart-reactions": (1, days),
        "chart-emoji": (1, len(data.top_emoji)),
        "chart-joins": (2, 2 * days),
    }
    assert sorted(charts) == sorted(expected)
    for name, (traces, bars) in expected.items():
        chart = charts[name]
        assert chart["svg"] >= 1, name
        assert chart["traces"] == traces == chart["drawnTraces"], name
        assert chart["bars"] == bars, name
    assert charts["chart-heatmap"]["heatmapRows"] == 7
    for name, chart in charts.items():  # drawn at the width it is shown at, none clipped
        assert abs(chart["drawnWidth"] - chart["width"]) <= 1, name
    for timeline in ("chart-messages", "chart-reactions", "chart-joins"):
        # The whole period, not just the days with rows (the 13th has none).
        assert charts[timeline]["xrange"] == ["2026-10-31 12:00", "2026-11-30 12:00"]
    assert charts["chart-heatmap"]["heatmapImage"] == 1
    # Names show exactly as typed (long ones shortened on the axis), and run nothing.
    assert charts["chart-members"]["yticks"][:3] == [HOSTILE[:23] + "…", "Alex", "Alex"]
    assert charts["chart-members"]["yticks"][4] == "user 5"
    assert charts["chart-channels"]["yticks"][1].startswith('#<a href="javascript:')
    assert charts["chart-emoji"]["yticks"][1] == ":party<b>blob</b>:"
    page = loaded.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.inner_text("h1") == f"Test & {HOSTILE}"
    assert page.locator("#members td", has_text=HOSTILE_IMG).count() == 1
    assert page.locator("img").count() == 0
    _save_screenshot(page, tmp_path, "report.png")
    assert loaded.blocked == []
    assert loaded.console == []
    assert loaded.errors == []


def test_the_page_fits_a_phone_screen(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(sample()), encoding="utf-8")
    loaded = LoadedPage(browser, path, width=390)
    charts = loaded.charts()
    assert all(0 < chart["width"] <= 390 for chart in charts.values())
    assert all(abs(chart["drawnWidth"] - chart["width"]) <= 1 for chart in charts.values())
    overflow = loaded.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow == 0
    _save_screenshot(loaded.page, tmp_path, "report-phone.png")
    assert (loaded.blocked, loaded.console, loaded.errors) == ([], [], [])


def test_the_no_data_page_loads_cleanly(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    empty = ReportData(
        guild_id=7, guild_name=None, since=SINCE, until=UNTIL, generated_at=GENERATED
    )
    path.write_text(render_report(empty), encoding="utf-8")
    loaded = LoadedPage(browser, path, width=1200)
    assert "No data" in loaded.page.inner_text("#no-data")
    assert (loaded.blocked, loaded.console, loaded.errors) == ([], [], [])
