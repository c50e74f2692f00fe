"""The report page: :func:`render_report` turns a :class:`ReportData` into one HTML document.

Charts are plotly figures; plotly.js is inlined once. Every name comes from chat users and is
escaped: with :func:`html.escape` in the HTML, and for plotly's labels (which read a few tags
as markup) as described in :func:`_chart_text`.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from importlib import resources
from string import Template
from typing import Any
from zoneinfo import ZoneInfo

from botdb import errors
from botdb.analytics.report._data import WEEKDAYS, ReportData, time_zone
from botdb.analytics.stats import DailyStats, TopChannel, TopEmoji, TopMember

__all__ = ["load_plotly", "render_report"]

#: Characters of a name shown on a chart's axis; the table and the hover text show all of it.
_AXIS_LABEL_CHARS = 24


def render_report(data: ReportData) -> str:
    """The report page for ``data``: one HTML document with plotly.js inlined.

    Pure: the same data gives the same page. A report without data is a short page that says
    so (and carries no plotly.js).

    Raises:
        MissingDependencyError: plotly is not installed (the ``report`` extra).
    """
    plotly = load_plotly()
    zone = time_zone(data.tz)
    title = data.guild_name or f"Guild {data.guild_id}"
    if data.has_data:
        charts = _Charts(plotly)
        body = _summary(data) + _sections(data, charts)
        script = '<script charset="utf-8">' + _plotly_js(plotly) + "</script>"
    else:
        body = (
            '<section class="empty" id="no-data"><h2>No data</h2><p>No messages, reactions, '
            "joins or leaves were recorded for this guild in this period.</p></section>"
        )
        script = ""
    generated = data.generated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return _page_template().substitute(
        title=_text(f"{title} — activity report"),
        heading=_text(title),
        period=_text(_period_text(data, zone)),
        plotly_js=script,
        body=body,
        footer=_text(f"Made by botdb on {generated} ({data.tz}). Guild id {data.guild_id}."),
    )


class _Charts:
    """Builds each chart's ``<div>`` (and the script that draws it) with plotly."""

    def __init__(self, plotly: Any) -> None:
        self._go = plotly.graph_objects
        self._io = plotly.io
        # plotly_white's layout without its per-trace-type defaults: the same look, and each
        # chart carries ~3 KB instead of ~7 KB (a one-bar chart, measured).
        white = plotly.io.templates["plotly_white"]
        self._template = self._go.layout.Template(layout=white.layout)

    def html(self, div_id: str, traces: list[Any], *, tall: bool = False, **layout: Any) -> str:
        figure = self._go.Figure(data=traces)
        figure.update_layout(
            template=self._template,
            margin={"l": 8, "r": 8, "t": 8, "b": 8},
            font={"family": "system-ui, sans-serif", "size": 12},
            legend={"orientation": "h", "y": -0.15},
            hoverlabel={"namelength": -1},
            autosize=True,
            **layout,
        )
        figure.update_xaxes(automargin=True)
        figure.update_yaxes(automargin=True)
        div = self._io.to_html(
            figure,
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=div_id,
            default_width="100%",
            default_height="100%",
            config={"responsive": True, "displaylogo": False, "showSendToCloud": False},
        )
        size = "chart tall" if tall else "chart"
        return f'<div class="{size}" data-chart="{div_id}">{div}</div>'

    def bar(self, **kwargs: Any) -> Any:
        return self._go.Bar(**kwargs)

    def scatter(self, **kwargs: Any) -> Any:
        return self._go.Scatter(**kwargs)

    def heatmap(self, **kwargs: Any) -> Any:
        return self._go.Heatmap(**kwargs)


def _summary(data: ReportData) -> str:
    messages = sum(d.messages for d in data.daily)
    busiest = max(data.daily, key=lambda d: d.messages, default=None)
    weekday, hour = max(
        ((w, h) for w in range(7) for h in range(24)), key=lambda wh: data.heatmap[wh[0]][wh[1]]
    )
    cards = [
        (f"{messages:,}", "messages"),
        (f"{sum(d.reactions for d in data.daily):,}", "reactions"),
        (f"{sum(d.joins for d in data.daily):,}", "joins"),
        (f"{sum(d.leaves for d in data.daily):,}", "leaves"),
    ]
    if busiest is not None and busiest.messages:
        cards.append((busiest.day.isoformat(), f"busiest day ({busiest.messages:,} messages)"))
    if data.heatmap[weekday][hour]:
        cards.append((f"{WEEKDAYS[weekday]} {hour:02d}:00", f"busiest hour ({data.tz})"))
    items = "".join(
        f'<div class="card"><b>{_text(value)}</b><span>{_text(label)}</span></div>'
        for value, label in cards
    )
    return f'<section class="cards" id="summary">{items}</section>'


def _sections(data: ReportData, charts: _Charts) -> str:
    # Every day of the period, quiet ones as zeros (the stats leave them out): a line then
    # drops to zero on them instead of skipping over, and the axis spans the whole period.
    every_day = _every_day(data)
    days = [d.day.isoformat() for d in every_day]
    timeline = {"type": "date", "range": _day_range(data)}
    parts: list[str] = []

    if any(d.messages for d in data.daily):
        chart = charts.html(
            "chart-messages",
            [
                charts.bar(x=days, y=[d.messages for d in every_day], name="messages"),
                charts.scatter(
                    x=days,
                    y=[d.active_members for d in every_day],
                    name="active members",
                    mode="lines+markers",
                ),
            ],
            xaxis=timeline,
            hovermode="x unified",
        )
    else:
        chart = _empty("No messages in this period.")
    parts.append(_section("messages", "Messages per day (UTC)", chart))

    if any(any(row) for row in data.heatmap):
        chart = charts.html(
            "chart-heatmap",
            [
                charts.heatmap(
                    z=[list(row) for row in data.heatmap],
                    x=[f"{h:02d}" for h in range(24)],
                    y=list(WEEKDAYS),
                    colorscale="Blues",
                    hovertemplate="%{y} %{x}:00 — %{z} messages<extra></extra>",
                    colorbar={"thickness": 10},
                )
            ],
            yaxis={"autorange": "reversed"},
            xaxis={"tickangle": 0},
        )
    else:
        chart = _empty("No messages in this period.")
    parts.append(_section("heatmap", f"When people talk (hour and weekday, {data.tz})", chart))

    members = _ranked_chart(
        charts,
        "chart-members",
        [_member_label(m) for m in data.top_members],
        [m.messages for m in data.top_members],
        "messages",
    )
    member_table = _table(
        ("#", "member", "messages", "last active"),
        [
            (
                str(rank),
                _member_label(m),
                f"{m.messages:,}",
                _when(m.last_active, data.tz),
            )
            for rank, m in enumerate(data.top_members, 1)
        ],
        numeric=(0, 2),
    )
    channels = _ranked_chart(
        charts,
        "chart-channels",
        [_channel_label(c) for c in data.top_channels],
        [c.messages for c in data.top_channels],
        "messages",
    )
    channel_table = _table(
        ("#", "channel", "messages"),
        [
            (str(rank), _channel_label(c), f"{c.messages:,}")
            for rank, c in enumerate(data.top_channels, 1)
        ],
        numeric=(0, 2),
    )
    parts.append(
        '<div class="grid">'
        + _section(
            "members",
            "Top members",
            members + member_table if data.top_members else _empty("No messages by members."),
        )
        + _section(
            "channels",
            "Top channels",
            channels + channel_table if data.top_channels else _empty("No messages in channels."),
        )
        + "</div>"
    )

    if any(d.reactions for d in data.daily):
        reactions = charts.html(
            "chart-reactions",
            [charts.bar(x=days, y=[d.reactions for d in every_day], name="reactions")],
            xaxis=timeline,
        )
    else:
        reactions = _empty("No reactions in this period.")
    if data.top_emoji:
        emoji = _ranked_chart(
            charts,
            "chart-emoji",
            [_emoji_label(e) for e in data.top_emoji],
            [e.count for e in data.top_emoji],
            "reactions",
        ) + _table(
            ("#", "emoji", "reactions"),
            [(str(r), _emoji_label(e), f"{e.count:,}") for r, e in enumerate(data.top_emoji, 1)],
            numeric=(0, 2),
        )
    else:
        emoji = _empty("No emoji used in this period.")
    parts.append(
        '<div class="grid">'
        + _section("reactions", "Reactions per day (UTC)", reactions)
        + _section("emoji", "Top emoji", emoji)
        + "</div>"
    )

    if any(d.joins or d.leaves for d in data.daily):
        chart = charts.html(
            "chart-joins",
            [
                charts.bar(x=days, y=[d.joins for d in every_day], name="joins"),
                charts.bar(x=days, y=[-d.leaves for d in every_day], name="leaves"),
            ],
            barmode="relative",
            xaxis=timeline,
            hovermode="x unified",
        )
    else:
        chart = _empty("Nobody joined or left in this period.")
    parts.append(_section("joins", "Joins and leaves per day (UTC)", chart))
    return "".join(parts)


def _ranked_chart(
    charts: _Charts, div_id: str, labels: list[str], values: list[int], unit: str
) -> str:
    """A horizontal bar per entry, the first on top. Positions, not names, are the
    categories: two members may share a name, and a category axis would merge them."""
    positions = list(range(len(labels)))
    return charts.html(
        div_id,
        [
            charts.bar(
                x=values,
                y=positions,
                orientation="h",
                customdata=[_chart_text(label) for label in labels],
                hovertemplate=f"%{{customdata}}: %{{x}} {unit}<extra></extra>",
                name=unit,
            )
        ],
        yaxis={
            "tickmode": "array",
            "tickvals": positions,
            "ticktext": [_chart_text(_shorten(label)) for label in labels],
            "autorange": "reversed",
        },
        showlegend=False,
        tall=len(labels) > 10,
    )


# -- small helpers -------------------------------------------------------------------------


def _section(name: str, title: str, content: str) -> str:
    return f'<section id="{name}"><h2>{_text(title)}</h2>{content}</section>'


def _empty(message: str) -> str:
    return f'<p class="empty">{_text(message)}</p>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: Sequence[int]) -> str:
    def cell(tag: str, index: int, value: str) -> str:
        kind = ' class="num"' if index in numeric else ""
        return f"<{tag}{kind}>{_text(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _text(value: str) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(value, quote=True)


def _chart_text(value: str) -> str:
    """Text for a plotly label. plotly reads ``<b>``, ``<a href>`` and other tags in labels
    as markup and turns ``&lt;``, ``&gt;`` and ``&amp;`` back into characters, so escaping
    those three shows a name exactly as typed."""
    return html.escape(value, quote=False)


def _shorten(label: str) -> str:
    return label if len(label) <= _AXIS_LABEL_CHARS else label[: _AXIS_LABEL_CHARS - 1] + "…"


def _member_label(member: TopMember) -> str:
    return member.name or f"user {member.user_id}"


def _channel_label(channel: TopChannel) -> str:
    return f"#{channel.name}" if channel.name else f"channel {channel.channel_id}"


def _emoji_label(emoji: TopEmoji) -> str:
    return f":{emoji.emoji_name}:" if emoji.emoji_id is not None else emoji.emoji_name


def _when(value: dt.datetime, tz: str) -> str:
    return value.astimezone(time_zone(tz)).strftime("%Y-%m-%d %H:%M")


def _period_days(data: ReportData) -> tuple[dt.date, dt.date]:
    """The first and last UTC day the period touches."""
    first = data.since.astimezone(dt.UTC).date()
    last = max(first, (data.until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date())
    return first, last


def _every_day(data: ReportData) -> list[DailyStats]:
    """The daily rows with a zero row for each day of the period (or between the rows given)
    that has none."""
    given = {d.day: d for d in data.daily}
    first, last = _period_days(data)
    if given:
        first, last = min(first, *given), max(last, *given)
    return [
        given.get(day) or DailyStats(day, 0, 0, 0, 0, 0)
        for day in (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    ]


def _day_range(data: ReportData) -> list[str]:
    """The period's UTC days as a date axis range, half a day of margin on each side."""
    first, last = _period_days(data)
    return [f"{first - dt.timedelta(days=1)} 12:00", f"{last} 12:00"]


def _period_text(data: ReportData, zone: ZoneInfo) -> str:
    since, until = data.since.astimezone(zone), data.until.astimezone(zone)
    if since.time() == dt.time() and until.time() == dt.time():
        last = until.date() - dt.timedelta(days=1)
        span = f"{since.date().isoformat()} to {last.isoformat()}"
    else:
        span = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
    return f"Activity from {span} ({data.tz})"


def _page_template() -> Template:
    source = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return Template(source)


def load_plotly() -> Any:
    try:
        # plotly ships no type information; it is used through Any here.
        import plotly.graph_objects  # type: ignore[import-untyped]
        import plotly.io  # type: ignore[import-untyped]
        import plotly.offline  # type: ignore[import-untyped]
    except ImportError as exc:
        raise errors.MissingDependencyError("plotly", "report") from exc
    return plotly


def _plotly_js(plotly: Any) -> str:
    source: str = plotly.offline.get_plotlyjs()
    # Inside <script>, only "</script" could end the element early; plotly.js holds none
    # today, and this keeps it so whatever version is installed.
    return source.replace("</script", "<\\/script")
