"""Reminders: messages whose reactions a bot tracks and reminds about (the reactions, each
reminder round), and the reminders users ask for.

The reminders service (``db.reminders``, :mod:`botdb.services.reminders`) fires both kinds
through the scheduler (``scheduled_jobs``): ``job_id`` names the job of a tracked event or of a
user's reminder, and the job's lease, retries and recurrence decide when it runs. The service
keeps ``due_at`` (the next planned time), ``sent_at`` and ``attempts``/``last_error`` of a
user's reminder up to date after each run. ``claimed_by``/``claimed_until`` date from before
the scheduler (a worker claiming ``user_reminders`` rows itself); the service leaves them NULL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    column,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from botdb.models.base import Base, TimestampMixin, builtin_info
from botdb.models.types import SURROGATE_KEY, utcnow

__all__ = ["REMINDER_STATUSES", "EventReaction", "ReminderLog", "TrackedEvent", "UserReminder"]

#: Values of ``reminder_logs.status``.
REMINDER_STATUSES = ("pending", "sent", "failed")

_EVENT_FK = ("tracked_events.id", "tracked_events.guild_id")


class TrackedEvent(TimestampMixin, Base):
    """A message whose reactions are tracked, with a reminder every ``interval_minutes``.

    ``required_reactions`` is a JSON list of emoji; users who have not reacted with them get
    reminded. ``(message_id, guild_id)`` is unique (a Telegram message id is per chat).
    """

    __tablename__ = "tracked_events"
    __table_args__ = (
        UniqueConstraint("message_id", "guild_id"),
        UniqueConstraint("id", "guild_id"),
        CheckConstraint("interval_minutes > 0", name="interval_positive"),
        Index("ix_tracked_events_guild_id_is_paused", "guild_id", "is_paused"),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    interval_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    is_paused: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_reminder_at: Mapped[datetime | None] = mapped_column(default=None)
    required_reactions: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))
    # Added by botdb_0009 (after the timestamps in a migrated table: sort_order keeps
    # create_all's column order the same).
    #: The scheduler job sending its reminders (NULL while paused, or when not scheduled).
    job_id: Mapped[int | None] = mapped_column(BigInteger, default=None, sort_order=910)


class EventReaction(Base):
    """That a user reacted to a tracked event with an emoji."""

    __tablename__ = "event_reactions"
    __table_args__ = (
        ForeignKeyConstraint(["event_id", "guild_id"], list(_EVENT_FK), ondelete="CASCADE"),
        {"info": builtin_info()},
    )

    event_id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
        index=True,
    )
    emoji: Mapped[str] = mapped_column(String(255), primary_key=True)
    reacted_at: Mapped[datetime] = mapped_column(server_default=utcnow())


class ReminderLog(TimestampMixin, Base):
    """One reminder round of a tracked event: when planned, when sent, to how many."""

    __tablename__ = "reminder_logs"
    __table_args__ = (
        ForeignKeyConstraint(["event_id", "guild_id"], list(_EVENT_FK), ondelete="CASCADE"),
        CheckConstraint("users_notified >= 0", name="users_notified_non_negative"),
        CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in REMINDER_STATUSES)})", name="status"
        ),
        CheckConstraint("status <> 'sent' OR sent_at IS NOT NULL", name="sent_has_sent_at"),
        Index(
            "ix_reminder_logs_event_id_guild_id_scheduled_at",
            "event_id",
            "guild_id",
            "scheduled_at",
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(SURROGATE_KEY)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    scheduled_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    users_notified: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    error_message: Mapped[str | None] = mapped_column(Text, default=None)


class UserReminder(TimestampMixin, Base):
    """A reminder a user asked for (see the module docstring for claiming).

    ``guild_id`` is NULL for a reminder set in a DM; ``channel_id`` is where to deliver it (a
    Telegram chat id on Telegram). It recurs every ``recurrence_seconds``, or on the ``cron``
    schedule in ``tz``; with neither it is one-shot.
    """

    __tablename__ = "user_reminders"
    __table_args__ = (
        CheckConstraint(
            "recurrence_seconds IS NULL OR recurrence_seconds > 0", name="recurrence_positive"
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint("(claimed_by IS NULL) = (claimed_until IS NULL)", name="claim_complete"),
        Index("ix_user_reminders_user_id_due_at", "user_id", "due_at"),
        Index("ix_user_reminders_guild_id", "guild_id"),
        Index(
            "ix_user_reminders_due",
            "due_at",
            sqlite_where=column("sent_at").is_(None),
            postgresql_where=column("sent_at").is_(None),
        ),
        {"info": builtin_info()},
    )

    id: Mapped[int] = mapped_column(SURROGATE_KEY, primary_key=True, autoincrement=True)
    guild_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), default=None
    )
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    content: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime]
    recurrence_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    #: The scheduler job delivering it.
    job_id: Mapped[int | None] = mapped_column(BigInteger, default=None, sort_order=910)
    #: A cron expression for a reminder recurring by calendar (``recurrence_seconds`` NULL),
    #: read in the time zone ``tz`` (an IANA name).
    cron: Mapped[str | None] = mapped_column(String(128), default=None, sort_order=911)
    tz: Mapped[str | None] = mapped_column(String(64), default=None, sort_order=912)
