"""The Repository contract: every test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, inspect, true
from sqlalchemy.orm import Mapped, configure_mappers, mapped_column, relationship, selectinload

import botdb
from botdb import errors
from botdb.models import (
    SURROGATE_KEY,
    Base,
    Channel,
    Guild,
    Member,
    Message,
    Role,
    TimestampMixin,
    User,
)
from botdb.repository import KeysetPage, Page, Repository
from tests.helpers import wait_until

#: This contract also runs through pgbouncer in transaction mode (see conftest).
PGBOUNCER_CONTRACT = True
CITUS_CONTRACT = True


class Widget(TimestampMixin, Base):
    """A user-defined model: surrogate key, a unique (guild_id, name), a relationship."""

    __tablename__ = "test_repo_widgets"
    __table_args__ = (UniqueConstraint("guild_id", "name"),)

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(50))
    stock: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(String(20), server_default="none")
    parts: Mapped[list[WidgetPart]] = relationship(back_populates="widget")


class WidgetPart(Base):
    __tablename__ = "test_repo_widget_parts"

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("test_repo_widgets.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(20))
    widget: Mapped[Widget] = relationship(back_populates="parts")


# The user tables above stay out of Base.metadata, which the migration tests compare with the
# packaged migrations; these tests create them themselves. Mappers are configured first, so
# the foreign key between them is resolved while both are still registered.
configure_mappers()
OWN_TABLES = [
    Base.metadata.tables["test_repo_widgets"],
    Base.metadata.tables["test_repo_widget_parts"],
]
for _table in OWN_TABLES:
    Base.metadata.remove(_table)

NOW = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


@pytest.fixture
async def db(db: botdb.Database) -> botdb.Database:
    """The shared ``db`` (built-in tables) plus this module's own tables."""
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda sync: Base.metadata.create_all(sync, tables=OWN_TABLES))
    return db


@pytest.fixture
def widgets(db: botdb.Database) -> Repository[Widget]:
    return db.repo(Widget)


async def _chat(db: botdb.Database) -> None:
    """A guild 1 with channel 2 and users 3, 4: what messages and roles reference."""
    await db.repo(Guild).create(id=1, name="g")
    await db.repo(Channel).create(id=2, guild_id=1, name="general")
    await db.repo(User).create_many([{"id": 3, "username": "ana"}, {"id": 4}])


def _columns(obj: Any) -> dict[str, Any]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


class TestRepository:
    """Seed 002's controller API over built-in and user models, on both backends."""

    # -- create and read -------------------------------------------------------------------

    async def test_create_returns_the_row_with_defaults_loaded(
        self, widgets: Repository[Widget]
    ) -> None:
        widget = await widgets.create(guild_id=1, name="bolt")
        assert widget.id is not None
        assert (widget.stock, widget.note) == (0, "none")  # Python default, server default
        assert isinstance(widget.created_at, dt.datetime)
        assert widget.created_at.tzinfo is not None
        assert inspect(widget).detached

    async def test_db_repo_returns_one_repository_per_model(self, db: botdb.Database) -> None:
        assert db.repo(Widget) is db.repo(Widget)
        assert db.repo(Widget).model is Widget
        assert db.repo(Widget).db is db

    async def test_get_by_id_fast_path_equals_the_session_path(self, db: botdb.Database) -> None:
        """The session-less get_by_id builds the same values the ORM loads (JSON, booleans,
        datetimes, composite keys)."""
        await _chat(db)
        await db.repo(Member).create(guild_id=1, user_id=3, preferences={"lang": ["pt", 1]})
        await db.repo(Message).create(
            id=10, guild_id=1, channel_id=2, author_id=3, content="hi", edited_at=NOW
        )
        for model, key in ((User, 3), (Member, (1, 3)), (Message, {"id": 10, "guild_id": 1})):
            repo = db.repo(model)
            fast = await repo.get_by_id(key)
            async with db.session() as session:
                slow = await repo.get_by_id(key, session=session)
            assert fast is not None
            assert slow is not None
            assert _columns(fast) == _columns(slow)
            assert inspect(fast).detached
        message = await db.repo(Message).get_by_id((10, 1))
        assert message is not None
        assert message.edited_at == NOW
        assert message.deleted is False
        member = await db.repo(Member).get_by_id((1, 3))
        assert member is not None
        assert member.preferences == {"lang": ["pt", 1]}

    async def test_get_by_id_returns_none_when_missing(self, widgets: Repository[Widget]) -> None:
        assert await widgets.get_by_id(12345) is None

    async def test_get_by_id_rejects_a_malformed_key(self, db: botdb.Database) -> None:
        members = db.repo(Member)
        with pytest.raises(errors.ArgumentError, match="composite"):
            await members.get_by_id(1)
        with pytest.raises(errors.ArgumentError):
            await members.get_by_id((1, 2, 3))
        with pytest.raises(errors.ArgumentError, match="guild_id"):
            await members.get_by_id({"guild": 1, "user_id": 2})
        with pytest.raises(errors.ArgumentError, match="takes int"):
            await db.repo(User).get_by_id("3")

    async def test_get_one_raises_not_found_naming_model_and_filter(
        self, widgets: Repository[Widget]
    ) -> None:
        with pytest.raises(errors.NotFoundError, match=r"Widget.*name='nope'"):
            await widgets.get_one({"name": "nope"})
        with pytest.raises(errors.NotFoundError, match=r"Widget.*nope"):
            await widgets.get_one(Widget.name == "nope")
        assert await widgets.get_one_or_none({"name": "nope"}) is None

    async def test_get_one_with_several_matches_raises(self, widgets: Repository[Widget]) -> None:
        await widgets.create_many([{"guild_id": 1, "name": "a"}, {"guild_id": 1, "name": "b"}])
        assert (await widgets.get_one({"name": "a"})).name == "a"
        with pytest.raises(errors.ArgumentError, match="more than one"):
            await widgets.get_one({"guild_id": 1})

    async def test_find_all_filters_order_limit_offset(self, widgets: Repository[Widget]) -> None:
        await widgets.create_many(
            [{"guild_id": g, "name": f"w{i}", "stock": i} for i, g in enumerate([1, 1, 2, 2, 3])]
        )

        async def names(**kwargs: Any) -> list[str]:
            return [w.name for w in await widgets.find_all(**kwargs)]

        assert await names(filters={"guild_id": 1}, order_by="name") == ["w0", "w1"]
        assert await names(filters={"guild_id": [2, 3]}, order_by="-stock") == ["w4", "w3", "w2"]
        assert await names(filters=[Widget.guild_id == 2, Widget.stock > 2]) == ["w3"]
        assert await names(filters=Widget.stock >= 3, order_by=Widget.stock.desc()) == [
            "w4",
            "w3",
        ]
        assert await names(order_by=["guild_id", "-name"], limit=2, offset=1) == ["w0", "w3"]
        assert await widgets.find_one({"guild_id": 2}, order_by="-name") is not None
        assert await widgets.find_one({"guild_id": 9}) is None

    async def test_find_all_eager_loads_with_options(self, db: botdb.Database) -> None:
        widgets = db.repo(Widget)
        widget = await widgets.create(guild_id=1, name="w")
        await db.repo(WidgetPart).create_many(
            [{"widget_id": widget.id, "label": "a"}, {"widget_id": widget.id, "label": "b"}]
        )
        (loaded,) = await widgets.find_all(options=[selectinload(Widget.parts)])
        assert sorted(p.label for p in loaded.parts) == ["a", "b"]
        again = await widgets.get_by_id(widget.id, options=[selectinload(Widget.parts)])
        assert again is not None
        assert len(again.parts) == 2

    async def test_unknown_filter_column_raises_before_any_query(self, db_url: str) -> None:
        """The check needs no connection: the database is not even connected."""
        repo: Repository[Widget] = Repository(botdb.connect(db_url), Widget)
        with pytest.raises(errors.UndefinedColumnError, match="'colour'") as info:
            await repo.find_all({"colour": "red"})
        assert info.value.column == "colour"
        with pytest.raises(errors.UndefinedColumnError, match="'size'"):
            await repo.count({"size": 1})
        with pytest.raises(errors.UndefinedColumnError):
            await repo.find_all(order_by="-colour")
        with pytest.raises(errors.UndefinedColumnError):
            await repo.create(guild_id=1, name="x", colour="red")
        with pytest.raises(errors.ArgumentError, match="filters must be"):
            await repo.find_all(True)  # type: ignore[arg-type]

    async def test_wrong_value_types_raise_and_change_nothing(
        self, db: botdb.Database, widgets: Repository[Widget], backend: str
    ) -> None:
        await widgets.create(guild_id=1, name="w", stock=1)
        with pytest.raises(errors.ArgumentError, match=r"Widget.stock takes int"):
            await widgets.create(guild_id=1, name="x", stock="many")
        with pytest.raises(errors.ArgumentError):
            await widgets.update_where({"name": "w"}, stock="2")
        with pytest.raises(errors.ArgumentError):
            await widgets.find_all({"stock": "1"})
        with pytest.raises(errors.ArgumentError, match="naive"):
            await db.repo(Guild).create(id=5, joined_at=dt.datetime(2024, 1, 1))
        assert [(w.name, w.stock) for w in await widgets.find_all()] == [("w", 1)]
        assert await db.repo(Guild).count() == 0
        if backend == "postgresql":
            # A raw expression is not pre-checked: PostgreSQL's refusal is still typed.
            # (integer = character varying: an undefined operator, a QueryError.)
            with pytest.raises(errors.QueryError):
                await widgets.update_where(Widget.stock == "abc", stock=5)
            assert (await widgets.get_one({"name": "w"})).stock == 1

    async def test_count_and_exists(self, widgets: Repository[Widget]) -> None:
        assert await widgets.count() == 0
        assert not await widgets.exists()
        await widgets.create_many([{"guild_id": 1, "name": str(i)} for i in range(5)])
        assert await widgets.count() == 5
        assert await widgets.count({"name": ["1", "2"]}) == 2
        assert await widgets.exists(Widget.name == "4")
        assert not await widgets.exists({"name": "9"})

    # -- pagination --------------------------------------------------------------------------

    async def test_paginate(self, widgets: Repository[Widget]) -> None:
        await widgets.create_many([{"guild_id": 1, "name": f"{i:02}"} for i in range(45)])
        page = await widgets.paginate(page=2, per_page=20, order_by="name")
        assert isinstance(page, Page)
        assert [w.name for w in page.items] == [f"{i:02}" for i in range(20, 40)]
        assert (page.total, page.pages, page.has_next, page.has_prev) == (45, 3, True, True)
        last = await widgets.paginate(page=3, per_page=20)
        assert len(last.items) == 5
        assert not last.has_next
        empty = await widgets.paginate(filters={"guild_id": 7})
        assert (empty.items, empty.total, empty.pages, empty.has_next) == ([], 0, 0, False)
        for bad in ({"page": 0}, {"per_page": 0}, {"per_page": 1001}, {"page": "1"}):
            with pytest.raises(errors.ArgumentError):
                await widgets.paginate(**bad)

    async def test_find_page_walks_every_row_once(self, widgets: Repository[Widget]) -> None:
        await widgets.create_many(
            [{"guild_id": i % 3, "name": f"n{i}", "stock": i % 4} for i in range(53)]
        )
        orders = (
            ("id",),
            ("-id",),
            ("guild_id", "stock"),
            ("guild_id", "-stock"),
            ("-created_at",),
        )
        for order in orders:
            seen: list[int] = []
            cursor = None
            while True:
                page = await widgets.find_page(after=cursor, limit=10, order_by=order)
                assert isinstance(page, KeysetPage)
                seen.extend(w.id for w in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert len(seen) == len(set(seen)), order
            assert len(seen) == 53, order
        rows = await widgets.find_page(limit=53, order_by=("-stock", Widget.name))
        keys = [(-w.stock, w.name, w.id) for w in rows.items]
        assert keys == sorted(keys)
        assert rows.next_cursor is None

    async def test_find_page_is_stable_while_rows_are_inserted(
        self, db: botdb.Database, widgets: Repository[Widget]
    ) -> None:
        await widgets.create_many([{"guild_id": i % 5, "name": f"old{i}"} for i in range(60)])
        before = {w.id for w in await widgets.find_all()}
        stop = asyncio.Event()

        written = 0

        async def writer() -> None:
            nonlocal written
            while not stop.is_set():
                await db.repo(Widget).create(guild_id=written % 7, name=f"new{written}")
                written += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(writer())
        seen: list[int] = []
        cursor = None
        try:
            while True:
                page = await widgets.find_page(after=cursor, limit=7, order_by=("guild_id",))
                seen.extend(w.id for w in page.items)
                mark = written
                await wait_until(lambda mark=mark: written > mark)  # a row inserted between pages
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        finally:
            stop.set()
            await task
        assert len(seen) == len(set(seen)), "a row came twice"
        assert before <= set(seen), "a row present before paging was skipped"
        assert await widgets.count() > len(before), "the writer inserted nothing"

    async def test_find_page_rejects_tampered_cursors(self, widgets: Repository[Widget]) -> None:
        await widgets.create_many([{"guild_id": 1, "name": str(i)} for i in range(5)])
        cursor = (await widgets.find_page(limit=2)).next_cursor
        assert cursor is not None
        flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
        for bad in (flipped, "garbage!!", "", cursor[:10], cursor + "AAAA"):
            with pytest.raises(errors.ArgumentError, match="cursor"):
                await widgets.find_page(after=bad, limit=2)
        with pytest.raises(errors.ArgumentError, match="order_by"):
            await widgets.find_page(after=cursor, limit=2, order_by=("-id",))
        with pytest.raises(errors.ArgumentError, match="nullable"):
            await widgets.db.repo(Guild).find_page(order_by=("name",))
        # another table's repository rejects it too (the key includes the table), and so
        # does a repository with another secret
        with pytest.raises(errors.ArgumentError):
            await widgets.db.repo(Guild).find_page(after=cursor)
        other = Repository(widgets.db, Widget, cursor_secret=b"another secret")
        with pytest.raises(errors.ArgumentError, match="signature"):
            await other.find_page(after=cursor, limit=2)
        same = Repository(widgets.db, Widget)
        assert len((await same.find_page(after=cursor, limit=2)).items) == 2

    async def test_find_page_defaults_to_the_primary_key(self, db: botdb.Database) -> None:
        await _chat(db)
        members = db.repo(Member)
        await members.create_many([{"guild_id": 1, "user_id": u} for u in (3, 4)])
        first = await members.find_page(limit=1)
        second = await members.find_page(after=first.next_cursor, limit=1)
        assert [m.user_id for m in first.items + second.items] == [3, 4]
        assert second.next_cursor is None
        with pytest.raises(errors.ArgumentError, match="nullable"):
            await db.repo(Message).find_page(order_by=("edited_at",))

    # -- updates ---------------------------------------------------------------------------

    async def test_update_by_id_returns_the_updated_row(self, widgets: Repository[Widget]) -> None:
        widget = await widgets.create(guild_id=1, name="w")
        updated = await widgets.update_by_id(widget.id, stock=7, name="v")
        assert (updated.id, updated.stock, updated.name) == (widget.id, 7, "v")
        assert updated.updated_at >= widget.updated_at
        fetched = await widgets.get_by_id(widget.id)
        assert fetched is not None
        assert fetched.stock == 7
        with pytest.raises(errors.NotFoundError, match="Widget with id=999"):
            await widgets.update_by_id(999, stock=1)
        with pytest.raises(errors.ArgumentError):
            await widgets.update_by_id(widget.id)

    async def test_update_where_returns_the_true_rowcount(
        self, widgets: Repository[Widget]
    ) -> None:
        rows = await widgets.create_many([{"guild_id": i % 2, "name": str(i)} for i in range(6)])
        ids = [w.id for w in rows]
        assert await widgets.update_where({"guild_id": 0}, stock=3) == 3
        assert await widgets.update_where({"id": [ids[0], 99_999, 99_998]}, stock=4) == 1
        assert await widgets.update_where(Widget.guild_id == 42, stock=1) == 0
        assert await widgets.update_where(true(), note="all") == 6
        assert sorted(w.stock for w in await widgets.find_all()) == [0, 0, 0, 3, 3, 4]
        with pytest.raises(errors.ArgumentError):
            await widgets.update_where(None, stock=1)

    async def test_bulk_update_counts_only_rows_that_exist(
        self, widgets: Repository[Widget]
    ) -> None:
        rows = await widgets.create_many([{"guild_id": 1, "name": str(i)} for i in range(4)])
        a, b, c, _ = (w.id for w in rows)
        changed = await widgets.bulk_update(
            [
                {"id": a, "stock": 10},
                {"id": b, "stock": 20, "note": "b"},
                {"id": 123_456, "stock": 30},  # does not exist: not counted
                {"id": c, "stock": 40},
                {"id": 123_457, "stock": 50, "note": "x"},
            ]
        )
        assert changed == 3
        stock = {w.id: (w.stock, w.note) for w in await widgets.find_all()}
        assert stock[a] == (10, "none")
        assert stock[b] == (20, "b")
        assert stock[c] == (40, "none")
        assert await widgets.bulk_update([]) == 0
        with pytest.raises(errors.ArgumentError, match="needs id"):
            await widgets.bulk_update([{"stock": 1}])

    async def test_bulk_update_with_a_composite_key(self, db: botdb.Database) -> None:
        await _chat(db)
        members = db.repo(Member)
        await members.create_many([{"guild_id": 1, "user_id": 3}, {"guild_id": 1, "user_id": 4}])
        rows = [{"guild_id": 1, "user_id": u, "nick": f"n{u}"} for u in (3, 4, 5)]
        assert await members.bulk_update(rows) == 2
        assert {m.nick for m in await members.find_all()} == {"n3", "n4"}

    # -- upserts and get_or_create ---------------------------------------------------------

    async def test_upsert_inserts_then_updates(self, widgets: Repository[Widget]) -> None:
        first = await widgets.upsert(
            {"guild_id": 1, "name": "w", "stock": 1}, conflict_columns=["guild_id", "name"]
        )
        second = await widgets.upsert(
            {"guild_id": 1, "name": "w", "stock": 2}, conflict_columns=["guild_id", "name"]
        )
        assert second.id == first.id
        assert second.stock == 2
        by_id = await widgets.upsert({"id": first.id, "guild_id": 1, "name": "w", "note": "n"})
        assert (by_id.stock, by_id.note) == (2, "n")
        kept = await widgets.upsert(
            {"guild_id": 1, "name": "w", "stock": 9, "note": "z"},
            conflict_columns=("guild_id", "name"),
            update_columns=["note"],
        )
        assert (kept.stock, kept.note) == (2, "z")
        assert await widgets.count() == 1
        with pytest.raises(errors.ArgumentError, match="unique constraint"):
            await widgets.upsert({"guild_id": 1, "name": "w"}, conflict_columns=["name"])

    async def test_upsert_many_counts_inserted_and_updated_rows(
        self, widgets: Repository[Widget]
    ) -> None:
        key = ["guild_id", "name"]
        rows = [{"guild_id": 1, "name": str(i), "stock": i} for i in range(5)]
        assert await widgets.upsert_many(rows, conflict_columns=key) == 5
        again = [{"guild_id": 1, "name": str(i), "stock": 100 + i} for i in range(3, 8)]
        again.append({"guild_id": 1, "name": "7", "stock": 777})  # repeated key: last wins
        assert await widgets.upsert_many(again, conflict_columns=key) == 5
        stock = {w.name: w.stock for w in await widgets.find_all()}
        assert stock == {"0": 0, "1": 1, "2": 2, "3": 103, "4": 104, "5": 105, "6": 106, "7": 777}
        assert await widgets.upsert_many([], conflict_columns=key) == 0

    async def test_get_or_create(self, widgets: Repository[Widget]) -> None:
        made, created = await widgets.get_or_create(guild_id=1, name="w", defaults={"stock": 5})
        assert created
        assert made.stock == 5
        found, created = await widgets.get_or_create(guild_id=1, name="w", defaults={"stock": 9})
        assert not created
        assert found.id == made.id
        assert found.stock == 5
        with pytest.raises(errors.ArgumentError, match="unique constraint"):
            await widgets.get_or_create(name="w")
        with pytest.raises(errors.ArgumentError):
            await widgets.get_or_create()
        assert await widgets.count() == 1

    async def test_get_or_create_from_20_tasks_creates_one_row(
        self, widgets: Repository[Widget]
    ) -> None:
        results = await asyncio.gather(
            *(
                widgets.get_or_create(guild_id=7, name="race", defaults={"stock": i})
                for i in range(20)
            )
        )
        assert sum(created for _, created in results) == 1
        assert len({obj.id for obj, _ in results}) == 1
        assert await widgets.count() == 1

    async def test_get_or_create_from_two_processes_creates_each_row_once(
        self, db: botdb.Database, db_url: str, tmp_path: Path
    ) -> None:
        script = tmp_path / "race.py"
        script.write_text(RACE_SCRIPT)
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                db_url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for proc in procs:  # both warmed up and waiting at the start line...
            assert proc.stdout is not None
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert ready == b"READY\n", (ready, proc.stderr and await proc.stderr.read())
        outputs = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))  # ...go
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
        reports = [json.loads(out) for out, _ in outputs]
        for key in range(RACE_KEYS):
            flags = [report[str(key)] for report in reports]
            assert sorted(flags) == [False, True], (key, flags)
        assert await db.repo(Guild).count() == RACE_KEYS

    # -- deletes and soft delete -----------------------------------------------------------

    async def test_delete_returns_counts(self, widgets: Repository[Widget]) -> None:
        rows = await widgets.create_many([{"guild_id": i % 2, "name": str(i)} for i in range(5)])
        assert await widgets.delete_by_id(rows[0].id) == 1
        assert await widgets.delete_by_id(rows[0].id) == 0
        assert await widgets.delete_where({"guild_id": 0}) == 2
        assert await widgets.delete_where(Widget.name == "zzz") == 0
        assert await widgets.count() == 2
        with pytest.raises(errors.ArgumentError):
            await widgets.delete_where(None)
        with pytest.raises(errors.ArgumentError, match="no soft delete"):
            await widgets.restore_by_id(rows[1].id)

    async def test_soft_delete_hides_rows_until_restored(self, db: botdb.Database) -> None:
        await _chat(db)
        roles = db.repo(Role)
        await roles.create_many([{"id": i, "guild_id": 1, "name": f"r{i}"} for i in (7, 8, 9)])
        assert await roles.delete_by_id(7) == 1
        assert await roles.delete_by_id(7) == 0  # already deleted
        assert await roles.get_by_id(7) is None
        async with db.session() as session:
            assert await roles.get_by_id(7, session=session) is None
        hidden = await roles.get_by_id(7, include_deleted=True)
        assert hidden is not None
        assert hidden.deleted_at is not None
        assert await roles.count() == 2
        assert await roles.count(include_deleted=True) == 3
        assert {r.id for r in await roles.find_all()} == {8, 9}
        assert await roles.update_where(true(), name="x") == 2
        with pytest.raises(errors.NotFoundError):
            await roles.update_by_id(7, name="y")
        assert await roles.delete_where({"id": [8, 9]}) == 2
        assert await roles.count(include_deleted=True) == 3
        restored = await roles.restore_by_id(7)
        assert restored.deleted_at is None
        assert (await roles.get_by_id(7)) is not None
        assert await roles.delete_by_id(8, hard=True) == 1
        assert await roles.count(include_deleted=True) == 2
        with pytest.raises(errors.NotFoundError):
            await roles.restore_by_id(8)

    async def test_soft_deleted_message_sets_its_flag(self, db: botdb.Database) -> None:
        """Message's own soft delete sets ``deleted`` and ``deleted_at``; restore clears both;
        get_or_create and upsert bring a soft-deleted row back."""
        await _chat(db)
        messages = db.repo(Message)
        await messages.create(id=10, guild_id=1, channel_id=2, author_id=3)
        assert await messages.delete_by_id((10, 1)) == 1
        gone = await messages.get_by_id((10, 1), include_deleted=True)
        assert gone is not None
        assert gone.deleted
        assert gone.deleted_at is not None
        back, created = await messages.get_or_create(id=10, guild_id=1)
        assert not created
        assert back.deleted is False
        assert back.deleted_at is None
        await messages.delete_by_id((10, 1))
        again = await messages.upsert(
            {"id": 10, "guild_id": 1, "channel_id": 2, "author_id": 3, "content": "edit"}
        )
        assert again.deleted is False
        assert again.content == "edit"

    # -- sessions ----------------------------------------------------------------------------

    async def test_caller_session_commits_nothing_itself(
        self, db: botdb.Database, widgets: Repository[Widget]
    ) -> None:
        class Abort(Exception):
            pass

        with pytest.raises(Abort):
            async with db.session() as session:
                w = await widgets.create(guild_id=1, name="a", session=session)
                await widgets.create_many([{"guild_id": 1, "name": "b"}], session=session)
                await widgets.upsert({"id": w.id, "guild_id": 1, "name": "a2"}, session=session)
                await widgets.get_or_create(guild_id=2, name="c", session=session)
                assert await widgets.update_where({"guild_id": 1}, stock=3, session=session) == 2
                assert await widgets.count(session=session) == 3
                fetched = await widgets.get_by_id(w.id, session=session)
                assert fetched is w
                assert w.stock == 3
                assert w.name == "a2"
                raise Abort
        assert await widgets.count() == 0

        async with db.session() as session:
            w = await widgets.create(guild_id=1, name="kept", session=session)
            await widgets.delete_where({"name": "none"}, session=session)
        assert (await widgets.get_one({"name": "kept"})).id == w.id

    async def test_caller_session_gets_typed_errors(
        self, db: botdb.Database, widgets: Repository[Widget]
    ) -> None:
        await widgets.create(guild_id=1, name="dup")
        async with db.session() as session:
            with pytest.raises(errors.UniqueViolationError):
                await widgets.create(guild_id=1, name="dup", session=session)
            await session.rollback()
            await widgets.create(guild_id=1, name="other", session=session)
        assert await widgets.count() == 2

    # -- constraints -----------------------------------------------------------------------

    async def test_constraint_violations_raise_typed_errors(self, db: botdb.Database) -> None:
        widgets = db.repo(Widget)
        await widgets.create(guild_id=1, name="w")
        with pytest.raises(errors.UniqueViolationError):
            await widgets.create(guild_id=1, name="w")
        with pytest.raises(errors.UniqueViolationError):
            await widgets.create_many([{"guild_id": 2, "name": "x"}, {"guild_id": 2, "name": "x"}])
        with pytest.raises(errors.NotNullViolationError):
            await widgets.create(guild_id=1, name=None)
        with pytest.raises(errors.ForeignKeyViolationError):
            await db.repo(Role).create(id=1, guild_id=404, name="r")
        with pytest.raises(errors.CheckViolationError):
            await db.repo(User).create(id=-5)
        with pytest.raises(errors.UniqueViolationError):
            await widgets.bulk_update([{"id": (await widgets.create(guild_id=1, name="v")).id,
                                        "name": "w"}])  # fmt: skip
        assert await widgets.count() == 2  # nothing else was written
        assert await db.repo(Role).count(include_deleted=True) == 0


RACE_KEYS = 25
RACE_SCRIPT = f"""
import asyncio, json, sys
import botdb
from botdb.models import Guild

async def main(url):
    async with botdb.connect(url) as db:
        guilds = db.repo(Guild)
        await guilds.count()  # warm up the pool before the start line
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the start signal
        report = {{}}
        for key in range({RACE_KEYS}):
            _, created = await guilds.get_or_create(id=9000 + key, defaults={{"name": "race"}})
            report[str(key)] = created
        print(json.dumps(report))

asyncio.run(main(sys.argv[1]))
"""
