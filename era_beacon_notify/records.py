"""What a run leaves for people and monitors: cache/last_run.json, the Prometheus textfile, pings.

None of this may fail a run: callers log a warning when it does. Nothing here holds a secret.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from .files import atomic_write, atomic_write_json, read_nofollow

log = logging.getLogger("era_beacon_notify")
METRIC_PREFIX = "era_beacon_notify"
PING_TIMEOUT_SECONDS = 5.0


@dataclass
class Counts:
    employees: int
    sent: int
    failed: int


@dataclass
class Outcome:
    exit_code: int
    outcome: str  # sent | skipped | dry-run | failed | terminated
    message: str
    counts: Counts | None = None


@dataclass
class RunRecord:
    started_at: str  # ISO 8601 with offset
    finished_at: str
    duration_seconds: float
    outcome: str
    exit_code: int
    message: str
    counts: dict[str, int] | None = None
    last_success_at: str | None = None  # carried over from run to run

    def last_success_epoch(self) -> float | None:
        return iso_to_epoch(self.last_success_at)


def iso(epoch: float, tz: tzinfo | None) -> str:
    moment = datetime.fromtimestamp(epoch, tz)
    return (moment if tz is not None else moment.astimezone()).isoformat(timespec="seconds")


def iso_to_epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def make_record(started: float, finished: float, tz: tzinfo | None, result: Outcome,
                previous: RunRecord | None) -> RunRecord:
    last_success = iso(finished, tz) if result.outcome == "sent" else (previous.last_success_at if previous else None)
    return RunRecord(
        started_at=iso(started, tz), finished_at=iso(finished, tz),
        duration_seconds=round(finished - started, 3), outcome=result.outcome, exit_code=result.exit_code,
        message=result.message, counts=asdict(result.counts) if result.counts else None,
        last_success_at=last_success,
    )


def load_last_run(path: Path) -> RunRecord | None:
    """The last record, or None when there is none or it is unreadable (a warning, never a failure)."""
    try:
        return RunRecord(**json.loads(read_nofollow(path, limit=64 * 1024)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable run record %s (%s)", path, type(exc).__name__)
        return None


def save_last_run(path: Path, record: RunRecord) -> None:
    atomic_write_json(path, asdict(record))


# --- Prometheus node_exporter textfile ----------------------------------------------------------

METRICS = (
    ("last_run_timestamp_seconds", "gauge", "Unix time the last run that took the lock finished."),
    ("last_success_timestamp_seconds", "gauge", "Unix time of the last run that sent notifications."),
    ("last_exit_code", "gauge", "Exit code of the last run that took the lock (0 = success)."),
    ("run_duration_seconds", "gauge", "Wall time of the last run that took the lock."),
    ("notifications_sent", "gauge", "Notifications the API reported sent in the last run."),
    ("notifications_failed", "gauge", "Notifications the API reported failed in the last run."),
    ("employees_total", "gauge", "Employees the API processed in the last run."),
)


def render_metrics(record: RunRecord, finished: float) -> str:
    counts = record.counts or {"employees": 0, "sent": 0, "failed": 0}
    values = {
        "last_run_timestamp_seconds": finished,
        "last_success_timestamp_seconds": record.last_success_epoch() or 0,
        "last_exit_code": record.exit_code,
        "run_duration_seconds": record.duration_seconds,
        "notifications_sent": counts["sent"],
        "notifications_failed": counts["failed"],
        "employees_total": counts["employees"],
    }
    lines = []
    for name, kind, help_text in METRICS:
        full = f"{METRIC_PREFIX}_{name}"
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {float(values[name])!r}"]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, record: RunRecord, finished: float) -> None:
    atomic_write(path, render_metrics(record, finished).encode(), mode=0o644)  # node_exporter must read it


# --- healthchecks.io-style pings -----------------------------------------------------------------

def ping(base: str, suffix: str, body: str, timeout: float = PING_TIMEOUT_SECONDS) -> None:
    """POST `body` to `{base}{suffix}`; logs, never raises (monitoring must not fail the run)."""
    if timeout <= 0.2:
        log.warning("monitoring ping%s skipped: no time left before max_run_seconds", suffix)
        return
    try:
        import requests  # only runs with a ping_url pay for it here

        resp = requests.post(base + suffix, data=body.encode(), timeout=timeout, allow_redirects=False)
        resp.close()
        if resp.status_code >= 300:
            log.warning("monitoring ping%s answered HTTP %s", suffix, resp.status_code)
    except Exception as exc:  # noqa: BLE001 - any failure here is only worth a warning
        log.warning("monitoring ping%s failed (%s)", suffix, type(exc).__name__)


# --- who holds the lock, without taking it -------------------------------------------------------

def lock_holder(lock_path: Path, proc_locks: Path = Path("/proc/locks")) -> int | None:
    """The pid holding a flock on `lock_path`, read from /proc/locks; None when nobody does.

    `--status` must never make a real run fail, so it never tries the lock itself.
    """
    try:
        st = os.stat(lock_path)
        text = proc_locks.read_text()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters carry "->" and are skipped
        if len(fields) < 6 or fields[1] == "->" or fields[1] not in ("FLOCK", "POSIX", "OFDLCK"):
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key == want:
            return int(fields[4])
    return None
