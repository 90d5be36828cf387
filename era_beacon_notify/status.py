"""--check and --status: what a person or a deploy script asks, with no network and no lock."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import records, token_cache
from .config import ENV_PASSWORD, Config
from .exits import EX_CONFIG, EXIT_OK, STATUS_NOT_OK, missing_dependency
from .logs import PROG
from .schedule import local_now, next_window, skip_reason


def check(cfg: Config) -> int:
    """Validate config and paths, print what they resolve to. No network, no lock."""
    problems = path_problems(cfg) + dependency_problems()
    now = local_now(cfg.tz)
    window = next_window(now, cfg.weekday_start_hour, cfg.weekday_end_hour, cfg.skip_dates)
    reason = skip_reason(now, cfg.weekday_start_hour, cfg.weekday_end_hour, cfg.skip_dates)
    source = f"from {ENV_PASSWORD}" if os.environ.get(ENV_PASSWORD) else "from the config file"
    lines = [
        ("config", str(cfg.path.absolute())),
        ("api_base_url", cfg.api_base_url),
        ("username", cfg.username),
        ("password", f"set ({source})"),
        ("threshold_minutes", str(cfg.threshold_minutes)),
        ("timezone", cfg.timezone or f"(server local time: {now.tzname()})"),
        ("business hours", f"Mon-Fri {cfg.weekday_start_hour:02d}:00-{cfg.weekday_end_hour:02d}:00, "
                           f"{len(cfg.skip_dates)} skip date(s)"),
        ("now", f"{now.isoformat(timespec='seconds')} ({'in business hours' if reason is None else reason})"),
        ("next business window", window.isoformat(timespec="seconds")),
        ("cache_dir", str(cfg.cache_dir)),
        ("lock", str(cfg.lock_path)),
        ("log file", str(cfg.log_file) if cfg.log_file else "(none: stderr only)"),
        ("max_run_seconds", str(cfg.max_run_seconds)),
        ("warmup_url", cfg.warmup_url or "(none)"),
        ("monitoring", ", ".join(filter(None, [cfg.ping_url and "ping_url set",
                                              cfg.metrics_file and f"metrics_file {cfg.metrics_file}"])) or "(none)"),
    ]
    for key, value in lines:
        print(f"{key + ':':24}{value}")
    for warning in cfg.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"{PROG}: config error: {problem}", file=sys.stderr)
    if problems:
        return EX_CONFIG
    print("config OK")
    return EXIT_OK


def path_problems(cfg: Config) -> list[str]:
    """What a run would fail to create: the cache folder (made with its parents), the log file and
    the metrics file (their folders must exist)."""
    problems = []
    if not _creatable(cfg.cache_dir):
        problems.append(f"{cfg.path}: cache_dir {cfg.cache_dir} cannot be created or written")
    for label, path in (("log file", cfg.log_file), ("metrics_file", cfg.metrics_file)):
        if path is None:
            continue
        if path.is_dir():
            problems.append(f"{cfg.path}: {label} {path} is a folder")
        elif not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
            problems.append(f"{cfg.path}: {label} {path}: its folder does not exist or is not writable")
        elif path.exists() and not os.access(path, os.W_OK):
            problems.append(f"{cfg.path}: {label} {path} is not writable")
    return problems


def dependency_problems() -> list[str]:
    """A Python without requirements.txt passes everything else and fails at the first business hour."""
    problems = []
    for name in ("filelock", "requests"):
        try:
            __import__(name)
        except ImportError as exc:
            problems.append(str(missing_dependency(exc)))
    return problems


def _creatable(folder: Path) -> bool:
    """The folder exists and is writable, or the nearest existing ancestor is."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def status(cfg: Config, as_json: bool) -> int:
    """Last run, last success, token time left (never the token), lock holder. No network, no lock."""
    now = time.time()
    record = records.load_last_run(cfg.last_run_path)
    try:
        token = token_cache.load(cfg.token_path)
    except token_cache.CacheUnreadable:
        token = None
    holder = lock_holder(cfg.lock_path)
    ok = record is not None and record.exit_code == EXIT_OK
    doc = {
        "ok": ok,
        "last_run": None if record is None else {
            "started_at": record.started_at, "finished_at": record.finished_at,
            "duration_seconds": record.duration_seconds, "outcome": record.outcome,
            "exit_code": record.exit_code, "message": record.message, "counts": record.counts},
        "last_success_at": record.last_success_at if record else None,
        "last_notify_at": record.last_notify_at if record else None,
        "token_seconds_left": None if token is None else int(token.expires_at - now),
        "lock_held_by_pid": holder,
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK if ok else STATUS_NOT_OK
    if record is None:
        print(f"last run:     none recorded in {cfg.last_run_path}")
    else:
        print(f"last run:     {record.started_at}, {record.duration_seconds:.1f}s, {record.outcome}, exit {record.exit_code}")
        print(f"              {record.message}")
    print(f"last success: {doc['last_success_at'] or 'never'}")
    if doc["last_notify_at"] != doc["last_success_at"]:  # a run failed after the server may have acted
        print(f"last notify:  {doc['last_notify_at']} (the server may have acted; not a success)")
    left = doc["token_seconds_left"]
    print("token:        " + ("none cached" if left is None else f"{left}s left" if left > 0 else "expired"))
    print("lock:         " + (f"held by pid {holder} (a run is in progress)" if holder else "free"))
    return EXIT_OK if ok else STATUS_NOT_OK


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
