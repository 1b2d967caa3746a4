"""Say that kubequeue is unreachable once, clearly, then remind every minute — not every
heartbeat — and say when it is back. The scheduler keeps running meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REMIND_EVERY = 60.0  # seconds between reminders while the outage lasts


class OutageLog:
    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._since: float | None = None
        self._last: float = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def report(self, what: str, error: BaseException) -> None:
        now = self._clock()
        if self._since is None:
            self._since = self._last = now
            self._log.error(
                "%s: %s. Tasks stay queued in the scheduler and are submitted once it "
                "answers; this message repeats every %.0f s while it lasts.",
                what,
                error,
                REMIND_EVERY,
            )
        elif now - self._last >= REMIND_EVERY:
            self._last = now
            self._log.warning("%s for %.0f s now: %s", what, now - self._since, error)

    def recovered(self) -> None:
        if self._since is not None:
            self._log.info("kubequeue reachable again after %.0f s", self._clock() - self._since)
            self._since = None
