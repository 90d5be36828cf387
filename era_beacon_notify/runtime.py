"""Process-level guards: the hard deadline on the whole run, and SIGTERM (with SIGINT and SIGHUP).

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
    """A stop signal arrived: exit 128 + its number (SIGTERM 143, SIGINT 130, SIGHUP 129)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        super().__init__(f"terminated by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


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
    """SIGTERM (cron, systemd, kill), SIGINT (Ctrl-C on a manual run) and SIGHUP (its terminal closed)
    all raise Terminated. SIGINT and SIGHUP stay ignored when the caller ignores them (nohup, `&`)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    for sig in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)
