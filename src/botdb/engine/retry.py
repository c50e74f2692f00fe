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
"""

from __future__ import annotations

import logging
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

__all__ = ["RetryPolicy", "may_retry"]

log = logging.getLogger("botdb.retry")
T = TypeVar("T")


def may_retry(exc: BaseException, *, read_only: bool) -> bool:
    """True when ``exc`` is transient and a retry cannot apply the statement twice."""
    if not isinstance(exc, errors.TransientError):
        return False
    if isinstance(exc, errors.ConnectionLostError):
        return read_only and not exc.in_doubt
    return True


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
    ) -> T:
        """Run ``operation`` until it succeeds, fails for good, or the attempts run out.

        The last error is raised as it is (already a botdb error).
        """

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                log.warning(
                    "retrying after %s (attempt %d of %d)",
                    type(exc).__name__,
                    state.attempt_number,
                    self.attempts,
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
