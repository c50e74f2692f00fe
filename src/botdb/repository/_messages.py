"""``db.messages``: the repository of :class:`~botdb.models.Message`, with full-text search.

Search runs on the index made beside the table (``botdb.models._search``): FTS5 with ``bm25``
on SQLite, a GIN index on ``to_tsvector('simple', content)`` with ``ts_rank`` on PostgreSQL.
The user's text is never handed to a query parser: it is cut into words (runs of letters and
digits, as both indexes cut it) and every word must occur; FTS5 gets each word quoted, and
PostgreSQL ``plainto_tsquery``, so no input can be a syntax error or an operator.

Results are ranked (best first), ties broken by the message key, and paged by keyset on
``(rank, id, guild_id)``: the cursor carries the last row's rank and key, signed like
:meth:`~botdb.repository.Repository.find_page` cursors. Ranking needs every match scored, so
a page costs the number of *matches* (what the index returns for the words and the filters),
not the size of the table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Select,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession

from botdb import errors
from botdb.models import _search
from botdb.models.messages import Message
from botdb.repository import Repository
from botdb.repository._base import MAX_PAGE, check_int
from botdb.repository._pagination import KeysetPage

if TYPE_CHECKING:
    from botdb._protocols import RepositoryDatabase

__all__ = ["MAX_SEARCH_TERMS", "MessageRepository", "SearchHit", "search_terms"]

#: The most words one search may hold (each is one more posting list to intersect).
MAX_SEARCH_TERMS = 32
#: The longest search text accepted, in characters.
MAX_SEARCH_TEXT = 1000

#: What a search's own transaction sets on PostgreSQL (``SET LOCAL``: this transaction only).
PG_SEARCH_SETTINGS = (
    # A search reads few rows (its matches), but the planner cannot tell a rare word from a
    # common one and plans parallel workers, whose start-up dominated: 23 ms against 4 ms for a
    # word in 100 of 1M messages.
    "SET LOCAL max_parallel_workers_per_gather = 0",
    # The matches are gathered in a bitmap of heap pages; past work_mem (4 MB by default,
    # ~50k pages) it turns lossy and every row of a lossy page is re-read and its content
    # parsed again. Measured on 10M messages (~140k heap pages), a word pair in 139k of them:
    # 134 s lossy (6.8M rows rechecked) against 7 s exact. 32 MB keeps the bitmap exact to
    # ~400k pages (~25M messages in one table or partition), and is taken only as needed.
    "SET LOCAL work_mem = '32MB'",
)

# Letters and digits (``_`` excluded): what FTS5's unicode61 and PostgreSQL's parser keep as
# a word. Everything else, emoji included, separates words in the index, so it does here too.
_WORD = re.compile(r"[^\W_]+")


def search_terms(text: str) -> list[str]:
    """The words of a search text, in order, each once.

    Raises:
        ArgumentError: ``text`` is not a str, is too long, or holds no word to look for (only
            spaces, punctuation or emoji), or holds more than :data:`MAX_SEARCH_TERMS` words.
    """
    if not isinstance(text, str):
        raise errors.ArgumentError(f"search text must be a str, got {type(text).__name__}")
    if len(text) > MAX_SEARCH_TEXT:
        raise errors.ArgumentError(
            f"search text is {len(text)} characters long; at most {MAX_SEARCH_TEXT}"
        )
    # Case is left to the indexes, which fold it themselves (each the same way on both sides).
    terms = list({word.lower(): word for word in _WORD.findall(text)}.values())
    if not terms:
        raise errors.ArgumentError(
            f"nothing to search for in {text!r}: give at least one word (letters or digits)"
        )
    if len(terms) > MAX_SEARCH_TERMS:
        raise errors.ArgumentError(
            f"search text has {len(terms)} different words; at most {MAX_SEARCH_TERMS}"
        )
    return terms


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result of :meth:`MessageRepository.search`.

    Attributes:
        message: the message (a detached instance, every column loaded).
        rank: how well it matches, higher is better; comparable within one search only
            (``-bm25`` on SQLite, ``ts_rank`` on PostgreSQL).
    """

    message: Message
    rank: float


def _aware(name: str, value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise errors.ArgumentError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise errors.ArgumentError(
            f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got naive {value}"
        )
    return value


class MessageRepository(Repository[Message]):
    """:class:`~botdb.repository.Repository` of :class:`~botdb.models.Message` plus
    :meth:`search`. Every other method works as on any repository."""

    def __init__(self, db: RepositoryDatabase, *, cursor_secret: bytes | None = None) -> None:
        super().__init__(db, Message, cursor_secret=cursor_secret)

    async def search(
        self,
        text: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        before: dt.datetime | None = None,
        after: dt.datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
        session: AsyncSession | None = None,
    ) -> KeysetPage[SearchHit]:
        """Messages containing every word of ``text``, best match first, one page at a time.

        Args:
            text: what to look for. Words are runs of letters and digits (any script), matched
                whole and case-insensitively; punctuation and emoji only separate words.
            guild_id, channel_id: only messages of this guild / channel.
            user_id: only messages by this author.
            before, after: only messages created before / after this (timezone-aware) time.
            limit: the page size, 1..1000.
            cursor: the ``next_cursor`` of the previous page (same text) to go on.
            include_deleted: also find deleted messages (left out by default).
            session: run in this session instead of a new one.

        Returns:
            a page of :class:`SearchHit`; ``next_cursor`` is None on the last page. Rows
            written between two pages change the ranks (the index's statistics), so a long
            paging session on a busy channel may repeat or skip a result at a page edge.

        Raises:
            ArgumentError: no word in ``text`` (empty, only spaces or emoji), a naive
                datetime, a value of the wrong type, or a cursor that is not from this search.

        Example:
            >>> page = await db.messages.search("raid tonight", guild_id=guild.id, limit=20)
            >>> for hit in page.items:
            ...     print(hit.rank, hit.message.content)
            >>> more = await db.messages.search("raid tonight", cursor=page.next_cursor)
        """
        terms = search_terms(text)
        check_int("limit", limit, 1, MAX_PAGE)
        info = self._info
        where: list[ColumnElement[bool]] = []
        for key, value in (("guild_id", guild_id), ("channel_id", channel_id)):
            if value is not None:
                info.check_value(key, value)
                where.append(info.attrs[key] == value)
        if user_id is not None:
            info.check_value("author_id", user_id)
            where.append(Message.author_id == user_id)
        if (low := _aware("after", after)) is not None:
            where.append(Message.created_at > low)
        if (high := _aware("before", before)) is not None:
            where.append(Message.created_at < high)
        where.extend(info.live(include_deleted))
        words = "\0".join(term.lower() for term in terms)
        tag = "search:" + hashlib.sha256(words.encode()).hexdigest()[:24]
        await self._cursors.load()
        resume = None if cursor is None else self._resume(cursor, tag)
        statement = self._search_statement(terms, where, resume, limit + 1)

        own_session = session is None

        async def work(s: AsyncSession) -> KeysetPage[SearchHit]:
            if own_session and self.db.backend == "postgresql":
                for setting in PG_SEARCH_SETTINGS:
                    await s.execute(sql_text(setting))
            rows = (await s.execute(statement)).all()
            hits = [SearchHit(message=row[0], rank=-float(row[1])) for row in rows[:limit]]
            if len(rows) <= limit:
                return KeysetPage(items=hits, next_cursor=None)
            last, rank = rows[limit - 1][0], float(rows[limit - 1][1])
            next_cursor = self._cursors.encode_tagged(tag, [rank, last.id, last.guild_id])
            return KeysetPage(items=hits, next_cursor=next_cursor)

        return await self._run(session, work, readonly=True)

    def _resume(self, cursor: str, tag: str) -> tuple[float, int, int]:
        rank, message_id, guild_id = self._cursors.decode_tagged(cursor, tag, 3)
        if isinstance(rank, bool) or not isinstance(rank, int | float):
            raise errors.ArgumentError("invalid cursor: not a cursor of this search")
        for key, value in (("id", message_id), ("guild_id", guild_id)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise errors.ArgumentError("invalid cursor: not a cursor of this search")
            self._info.check_value(key, value)
        return float(rank), message_id, guild_id

    def _search_statement(
        self,
        terms: list[str],
        where: list[ColumnElement[bool]],
        resume: tuple[float, int, int] | None,
        limit: int,
    ) -> Select[Message, float]:
        """The page's SELECT of ``(Message, rank)``, rank ascending (lower is better)."""
        rank: ColumnElement[float]
        if self.db.backend == "sqlite":
            # The matches are collected first (MATERIALIZED): flattened into the join, SQLite
            # could walk the guild's messages and probe the index once per row.
            fts = _search.FTS_TABLE
            phrase = " ".join(f'"{term}"' for term in terms)  # words only: no quote inside
            hits = (
                select(
                    literal_column("rowid").label("hit"),
                    literal_column(f"bm25({fts})").label("rank"),
                )
                .select_from(table(fts))
                .where(text(f"{fts} MATCH :match").bindparams(match=phrase))
                .cte("hits")
                .prefix_with("MATERIALIZED")
            )
            rank = hits.c.rank
            statement = select(Message, rank).join_from(
                Message, hits, hits.c.hit == literal_column("messages.rowid")
            )
        else:
            # Spelled as the index's expression so that the planner uses it.
            vector: ColumnElement[Any] = literal_column(
                _search.PG_VECTOR.replace("content", "messages.content")
            )
            query = func.plainto_tsquery(
                literal_column("'simple'::regconfig"), bindparam("words", " ".join(terms))
            )
            rank = cast(-func.ts_rank(vector, query), Double)
            statement = select(Message, rank.label("rank")).where(vector.op("@@")(query))
        statement = statement.where(*where)
        if resume is not None:
            last_rank, message_id, guild_id = resume
            statement = statement.where(
                tuple_(rank, Message.id, Message.guild_id)
                > tuple_(
                    literal(last_rank, Double),
                    literal(message_id, BigInteger),
                    literal(guild_id, BigInteger),
                )
            )
        return statement.order_by(rank, Message.id, Message.guild_id).limit(limit)
