"""What a run leaves for people and monitors: cache/last_run.json, the Prometheus textfile, pings.

None of this may fail a run: callers log a warning when it does. Nothing here holds a secret.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, fields
from datetime import datetime, tzinfo
from pathlib import Path

from .files import atomic_write, atomic_write_json, read_nofollow, remove_stale_temp_files

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
    notified: bool = False  # employees may have been notified (2xx, or failed after sending)


@dataclass
class RunRecord:
    started_at: str  # ISO 8601 with offset
    finished_at: str
    duration_seconds: float
    outcome: str
    exit_code: int
    message: str
    counts: dict[str, int] | None = None
    last_success_at: str | None = None  # the last run that sent and exited 0; carried over
    last_notify_at: str | None = None  # the last run that may have notified anyone; carried over

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
    now = iso(finished, tz)
    return RunRecord(
        started_at=iso(started, tz), finished_at=now,
        duration_seconds=round(finished - started, 3), outcome=result.outcome, exit_code=result.exit_code,
        message=result.message, counts=asdict(result.counts) if result.counts else None,
        last_success_at=now if result.outcome == "sent" else (previous.last_success_at if previous else None),
        last_notify_at=now if result.notified else (previous.last_notify_at if previous else None),
    )


_RECORD_TYPES = {"started_at": str, "finished_at": str, "duration_seconds": (int, float), "outcome": str,
                 "exit_code": int, "message": str, "counts": (dict, type(None)),
                 "last_success_at": (str, type(None)), "last_notify_at": (str, type(None))}


def load_last_run(path: Path) -> RunRecord | None:
    """The last record, or None when there is none or it is unreadable (a warning, never a failure)."""
    try:
        doc = json.loads(read_nofollow(path, limit=64 * 1024))
        if set(doc) != {f.name for f in fields(RunRecord)} or not all(
                isinstance(doc[k], kind) and not isinstance(doc[k], bool) for k, kind in _RECORD_TYPES.items()):
            raise ValueError("fields of the wrong name or type")
        return RunRecord(**doc)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
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
    remove_stale_temp_files(path.parent, path.name)  # a killed run's, in the collector's folder
    atomic_write(path, render_metrics(record, finished).encode(), mode=0o644)  # node_exporter must read it


# --- healthchecks.io-style pings -----------------------------------------------------------------

def ping(base: str, suffix: str, body: str) -> None:
    """POST `body` to `{base}{suffix}`, waiting PING_TIMEOUT_SECONDS at most in all; logs, never raises.

    The POST runs in a daemon thread that the run stops waiting for: requests' timeout bounds each
    connect and each read, not a slow trickle or a hung DNS lookup, and monitoring must never hold
    the lock (and so block the next run) or fail a run.
    """
    def post() -> None:
        try:
            import requests  # only runs with a ping_url pay for it here

            resp = requests.post(base + suffix, data=body.encode(), timeout=PING_TIMEOUT_SECONDS,
                                 allow_redirects=False)
            resp.close()
            if resp.status_code >= 300:
                log.warning("monitoring ping%s answered HTTP %s", suffix, resp.status_code)
        except Exception as exc:  # noqa: BLE001 - any failure here is only worth a warning
            log.warning("monitoring ping%s failed (%s)", suffix, type(exc).__name__)

    sender = threading.Thread(target=post, name="ping", daemon=True)
    sender.start()
    sender.join(PING_TIMEOUT_SECONDS)
    if sender.is_alive():
        log.warning("monitoring ping%s took over %.0fs; going on without it", suffix, PING_TIMEOUT_SECONDS)
