"""Which errors are worth retrying, and how long to wait between tries.

A statement outside an explicit transaction is retried when it failed with a
:class:`~botdb.errors.TransientError` *and* retrying cannot apply it twice:

* deadlock, serialization failure, SQLite BUSY/LOCKED: the server rolled the statement back;
* no connection could be made: nothing was sent;
* the connection dropped mid-statement: only for read-only statements. A write whose
  connection dropped in flight may have been committed, so it raises
  :class:`~botdb.errors.ConnectionLostError` with ``in_doubt=True`` instead of running again.

Inside a transaction nothing is retried alone: :meth:`botdb.Database.run_in_transaction`
re-runs the whole function, because the server rolls the whole transaction back.
Integrity errors, timeouts and query errors are never retried.

:class:`Retrier` is the one retry runner: the raw API, transactions, repositories and services
all retry through it, and it counts every retry in ``db.stats()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from botdb import errors

__all__ = ["Retrier", "RetryPolicy", "may_retry", "whole_unit_retryable"]

log = logging.getLogger("botdb.retry")
T = TypeVar("T")


def may_retry(exc: BaseException, *, read_only: bool) -> bool:
    """True when ``exc`` is transient and a retry cannot apply the statement twice."""
    if not isinstance(exc, errors.TransientError):
        return False
    if isinstance(exc, errors.ConnectionLostError):
        return read_only and not exc.in_doubt
    return True


def whole_unit_retryable(exc: BaseException) -> bool:
    """For a whole transaction or unit of work: the server rolled all of it back, so it may
    run again - unless the failure struck the COMMIT itself and left it in doubt."""
    return may_retry(exc, read_only=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Attributes:
        attempts: tries in all, the first included (1 turns retrying off).
        initial_delay: seconds before the first retry; doubles each time.
        max_delay: the longest wait between two tries.
        jitter: up to this many seconds added at random to each wait.
    """

    attempts: int = 3
    initial_delay: float = 0.05
    max_delay: float = 2.0
    jitter: float = 0.1

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[BaseException], bool],
        on_retry: Callable[[BaseException], None] | None = None,
        tried: int = 0,
    ) -> T:
        """Run ``operation`` until it succeeds, fails for good, or the attempts run out.

        The last error is raised as it is (already a botdb error). ``tried``: attempts made
        before this call, for the log's numbering.
        """

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                log.warning(
                    "retrying after %s (attempt %d of %d)",
                    type(exc).__name__,
                    tried + state.attempt_number,
                    tried + self.attempts,
                )
                if on_retry is not None:
                    on_retry(exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.initial_delay, max=self.max_delay)
            + wait_random(0, self.jitter),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(operation)


class Retrier:
    """The one retry runner of a Database: the first try runs inline (no tenacity on the
    happy path, which costs ~15 µs a call), the rest under :class:`RetryPolicy`'s backoff.
    Every retry is counted through ``on_retry``.
    """

    __slots__ = ("_on_retry", "_rest", "policy")

    def __init__(self, policy: RetryPolicy, *, on_retry: Callable[[BaseException], None]) -> None:
        self.policy = policy
        self._on_retry = on_retry
        self._rest = RetryPolicy(
            attempts=policy.attempts - 1,
            initial_delay=policy.initial_delay * 2,
            max_delay=policy.max_delay,
            jitter=policy.jitter,
        )

    async def run(
        self, operation: Callable[[], Awaitable[T]], *, retryable: Callable[[BaseException], bool]
    ) -> T:
        """Run ``operation``, again after a transient failure while attempts remain."""
        try:
            return await operation()
        except Exception as exc:
            return await self.after(exc, operation, retryable=retryable)

    async def after(
        self,
        error: BaseException,
        operation: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[BaseException], bool],
    ) -> T:
        """Continue after the first try failed with ``error`` (already a botdb error):
        raise it when it may not be retried, else wait and run ``operation`` again."""
        if self.policy.attempts <= 1 or not retryable(error):
            raise error
        log.warning(
            "retrying after %s (attempt 1 of %d)", type(error).__name__, self.policy.attempts
        )
        self._on_retry(error)
        await asyncio.sleep(self.policy.initial_delay + random.uniform(0, self.policy.jitter))  # noqa: S311 - jitter
        return await self._rest.call(
            operation, retryable=retryable, on_retry=self._on_retry, tried=1
        )
