"""Process-level guards: the hard deadline on the whole run, and SIGTERM.

Both raise `BaseException` subclasses from a signal handler. Deriving from `BaseException`, not
`OSError` or `Exception`, is deliberate: urllib3 retries on `OSError`, and libraries catch
`Exception`; neither may mistake "time is up" for a transient network error and carry on.
"""

from __future__ import annotations

import signal
import time
from types import FrameType


class DeadlineExceeded(BaseException):
    """The run reached max_run_seconds (exit 69)."""


class Terminated(BaseException):
    """SIGTERM arrived (exit 143)."""


class Deadline:
    """A hard bound on the run: SIGALRM after `seconds`, even mid-read of a trickling answer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def arm(self) -> None:
        signal.signal(signal.SIGALRM, self._expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 0.001))

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"max_run_seconds ({self.seconds:g}s) reached")


def raise_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
