"""Slow down guessing: too many failed authentications from one address → 429 for a while.

Counted per API process (a guesser spread over N workers gets N times the budget, still far
too little to guess a 256-bit token).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
# Bound memory when failures come from very many addresses: forget the least recent.
MAX_TRACKED_ADDRESSES = 10_000


class FailureLimiter:
    """Failed attempts per client address in a sliding window."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        stamps = self._failures.get(address)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[address]
            return None
        return stamps

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        now = self._clock()
        stamps = self._recent(address, now)
        if stamps is None or len(stamps) < self.max_failures:
            return None
        return max(1, int(stamps[0] + self.window - now + 0.999))

    def record_failure(self, address: str) -> None:
        now = self._clock()
        stamps = self._recent(address, now)
        if stamps is None:
            stamps = self._failures[address] = deque(maxlen=self.max_failures)
            if len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        stamps.append(now)
