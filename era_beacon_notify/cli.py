"""The run: command line, logging, the lock, the token, one notification, the exit code.

Reading order: exit codes, command line, logging, `main` (the whole run at a glance), then the
steps it calls. `requests` and `filelock` are imported inside the steps that need them, so a run
skipped outside business hours pays for neither, and a lock-busy run never imports `requests`.
Likewise the run record, the token cache and json (records, token_cache, files): imported once the
lock is taken, so the runs that stop before it pay nothing for them (~8 ms of a skipped run; bench/).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path

from .config import ENV_PASSWORD, Config, ConfigError, load_config
from .runtime import Deadline, DeadlineExceeded, Terminated, raise_on_sigterm
from .schedule import local_now, next_window, skip_reason

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from . import records, token_cache
    from .records import Outcome

log = logging.getLogger("era_beacon_notify")

# --- exit codes (sysexits.h) ----------------------------------------------------------------------
EXIT_OK = 0
EX_USAGE = 64  # bad command line
EX_UNAVAILABLE = 69  # the API is unreachable, failed, or the deadline passed
EX_SOFTWARE = 70  # a bug: traceback in the log file
EX_CANTCREAT = 73  # the cache, the lock or the log file cannot be created
EX_TEMPFAIL = 75  # another run holds the lock
EX_PROTOCOL = 76  # an answer the API contract does not allow
EX_NOPERM = 77  # credentials or token refused
EX_CONFIG = 78  # bad configuration
EXIT_SIGTERM = 143  # 128 + SIGTERM (SIGINT 130, SIGHUP 129: 128 + the signal, see runtime.Terminated)
STATUS_NOT_OK = 1  # --status: the last run failed, or there is none

PROG = "notify_once"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.ini"  # beside notify_once.py, not the cwd


class Stop(Exception):
    """End the run early with this exit code; the text is the one-line reason."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- command line ---------------------------------------------------------------------------------

class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, told the terminal width: left to itself it imports shutil (and zlib,
    bz2 and lzma with it: ~3 ms of every run) on each add_argument, only to ask for that width."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil: $COLUMNS, the terminal, or 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2; sysexits says 64
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog=PROG, description="Send one Era Beacon absence notification (run by cron every 30 minutes).",
                formatter_class=_HelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="PATH",
                   help="config file (default: config.ini beside notify_once.py)")
    p.add_argument("--force", action="store_true", help="run even outside business hours, on skip_dates, "
                   "or within min_gap_minutes of the last send")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="do everything but the notify POST; print the request it would send")
    mode.add_argument("--check", action="store_true", help="validate config and paths; no network, no lock")
    mode.add_argument("--status", action="store_true", help="summarize the last run; no network, no lock")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="more on the console")
    talk.add_argument("-q", "--quiet", action="store_true", help="only errors on the console")
    args = p.parse_args(argv)
    if args.json and not args.status:
        p.error("--json goes with --status")
    return args


# --- logging --------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_TOKEN_LIKE = re.compile(r"(eyJ[\w-]+\.[\w-]+\.[\w-]*|Bearer\s+\S+)")


def add_secret(value: str) -> None:
    """Never let `value` reach a log line, whatever code logs it."""
    if value:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    return _TOKEN_LIKE.sub("[REDACTED]", text)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


FILE_ONLY = {"file_only": True}  # `extra=` for records that belong in the log file, not on stderr


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def _ours_or_error(record: logging.LogRecord) -> bool:
    """Libraries' chatter below ERROR (urllib3's "Retrying (...)" lines) goes to the log file only:
    a failed cron run mails one clear line, the program's own."""
    return record.name.startswith(log.name) or record.levelno >= logging.ERROR


class _ConsoleFormatter(logging.Formatter):
    """One line per record on stderr: tracebacks go to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None}))


def console_level(configured: str, tty: bool, verbose: bool, quiet: bool) -> int:
    """Cron (no terminal) sees WARNING and up, so a good run mails nothing; -v/-q move one step."""
    if quiet:
        return logging.ERROR
    level = logging.getLevelName(configured) if tty else logging.WARNING
    return max(logging.DEBUG, level - 10) if verbose else level


def setup_logging(cfg: Config | None, verbose: bool = False, quiet: bool = False) -> None:
    """Log file (WatchedFileHandler, so logrotate works) at its level, stderr as console_level says."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    configured = cfg.log_level if cfg else "INFO"
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level(configured, sys.stderr.isatty(), verbose, quiet))
    console.setFormatter(_ConsoleFormatter(f"{PROG}: %(levelname)s: %(message)s"))
    console.addFilter(_not_file_only)
    console.addFilter(_ours_or_error)
    handlers: list[logging.Handler] = [console]
    if cfg and cfg.log_file:
        file_handler = logging.handlers.WatchedFileHandler(cfg.log_file, encoding="utf-8")
        file_handler.setLevel(configured)
        file_handler.setFormatter(logging.Formatter(cfg.log_format))
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(_Redact())
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except Terminated as stop:  # a stop signal outside the API calls (those are handled in guarded_send)
        logged = logging.getLogger().handlers  # logging is set up once the config is read
        if logged:
            log.error("%s; no API call was in flight (exit %d)", stop, stop.exit_code)
        else:
            print(f"{PROG}: {stop}; nothing was sent (exit {stop.exit_code})", file=sys.stderr)
        return stop.exit_code


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    os.umask(0o077)  # everything this run creates is private to its user
    raise_on_sigterm()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{PROG}: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    add_secret(cfg.password)
    if args.check:
        return check(cfg)
    if args.status:
        return status(cfg, as_json=args.json)
    try:
        setup_logging(cfg, args.verbose, args.quiet)
    except OSError as exc:
        print(f"{PROG}: cannot open log file {cfg.log_file}: {exc.strerror or exc}", file=sys.stderr)
        return EX_CANTCREAT
    try:
        return run(cfg, args)
    except Stop as stop:
        log.log(logging.WARNING if stop.exit_code == EX_TEMPFAIL else logging.ERROR, "%s", stop)
        return stop.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug must still exit cleanly
        log.critical("%s (exit %d)", bug(exc), EX_SOFTWARE)
        return EX_SOFTWARE


def bug(exc: Exception) -> str:
    """Log the traceback to the log file only; return the one line for stderr."""
    log.critical("traceback of the internal error:", exc_info=True, extra=FILE_ONLY)
    return f"internal error (a bug, see the log file): {type(exc).__name__}: {exc}"


def run(cfg: Config, args: argparse.Namespace) -> int:
    """Hours, lock, then the API work with a run record around it."""
    for warning in cfg.warnings:
        log.warning("%s", warning)
    reason = skip_reason(local_now(cfg.tz), cfg.weekday_start_hour, cfg.weekday_end_hour, cfg.skip_dates)
    if reason and not args.force:
        log.info("skipped: %s (timezone %s); --force runs anyway", reason, cfg.timezone or "local")
        return EXIT_OK

    deadline = Deadline(cfg.max_run_seconds)
    deadline.arm()
    try:
        lock = take_lock(cfg)
    except BaseException:
        deadline.disarm()
        raise
    started = time.time()
    try:
        from . import records
        from .files import remove_stale_temp_files

        remove_stale_temp_files(cfg.cache_dir)
        previous = records.load_last_run(cfg.last_run_path)
        if cfg.ping_url and not args.dry_run:
            records.ping(cfg.ping_url, "/start", f"run started at {records.iso(started, cfg.tz)}",
                         min(records.PING_TIMEOUT_SECONDS, deadline.remaining()))
        result = guarded_send(cfg, args, deadline, previous)
        deadline.disarm()
        report(result)
        if not args.dry_run:
            finish(cfg, result, started, previous, deadline)
        return result.exit_code
    finally:
        deadline.disarm()
        lock.release()


def take_lock(cfg: Config) -> Any:
    """A non-blocking filelock on cache/notify_once.lock: Stop(75) when busy, Stop(73) when impossible."""
    try:
        cfg.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # mkdir(exist_ok=True) raises this only when the path is not a folder
        raise Stop(EX_CANTCREAT, f"cannot create cache folder {cfg.cache_dir}: it exists and is not a folder") from None
    except OSError as exc:
        raise Stop(EX_CANTCREAT, f"cannot create cache folder {cfg.cache_dir}: {exc.strerror or exc}") from None
    import filelock  # not needed by runs skipped outside business hours

    lock = filelock.FileLock(str(cfg.lock_path), blocking=False, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        # filelock also reports "busy" when the lock file could not be created at all (it gives up
        # on ENOENT); a holder always leaves the file in place, so no file means "cannot create".
        if not os.path.lexists(cfg.lock_path):
            raise Stop(EX_CANTCREAT, f"cannot create lock {cfg.lock_path}: the file could not be created") from None
        raise Stop(EX_TEMPFAIL, f"another run holds {cfg.lock_path}; not sending (exit {EX_TEMPFAIL})") from None
    except OSError as exc:
        raise Stop(EX_CANTCREAT, f"cannot create lock {cfg.lock_path}: {exc.strerror or exc}") from None
    return lock


def guarded_send(cfg: Config, args: argparse.Namespace, deadline: Deadline,
                 previous: records.RunRecord | None) -> Outcome:
    """`send`, with every way it can end turned into an Outcome (so a record is always written)."""
    from .records import Outcome

    progress = Progress()
    try:
        gap = recent_success(previous, time.time(), cfg.min_gap_minutes)
        if gap is not None and not (args.force or args.dry_run):
            return Outcome(EXIT_OK, "skipped", f"skipped: the last successful send was {gap:.0f}s ago, "
                           f"within min_gap_minutes={cfg.min_gap_minutes}; --force sends anyway")
        return send(cfg, args, deadline, progress)
    except Stop as stop:
        return Outcome(stop.exit_code, "failed", str(stop))
    except DeadlineExceeded as exc:
        if progress.phase == "notify" and progress.notify_in_flight:
            return Outcome(EX_UNAVAILABLE, "failed", f"{exc} while waiting for the notify answer: "
                           "outcome unknown, not resent (a duplicate would reach employees)")
        return Outcome(EX_UNAVAILABLE, "failed", f"{exc} during {progress.phase}; nothing was sent")
    except Terminated as stop:
        unknown = " (notify in flight: outcome unknown)" if progress.notify_in_flight else ""
        return Outcome(stop.exit_code, "terminated", f"{stop} during {progress.phase}{unknown}")
    except Exception as exc:  # noqa: BLE001 - a bug still gets its run record, under the lock
        return Outcome(EX_SOFTWARE, "failed", bug(exc))


class Progress:
    """Where the run is, so an interruption can say whether a notification may have gone out."""

    phase = "start"
    notify_in_flight = False


def recent_success(previous: records.RunRecord | None, now: float, min_gap_minutes: int) -> float | None:
    """Seconds since the last successful send when that is within the gap, else None.

    Compared as an absolute difference: a clock set back an hour must not block runs for an hour.
    """
    last = previous.last_success_epoch() if previous else None
    if last is None or min_gap_minutes <= 0:
        return None
    ago = now - last
    return ago if abs(ago) < min_gap_minutes * 60 else None


# --- the API work ---------------------------------------------------------------------------------

def send(cfg: Config, args: argparse.Namespace, deadline: Deadline, progress: Progress) -> Outcome:
    from . import api  # imports requests: only runs that reach the API pay for it
    from . import token_cache
    from .records import Outcome

    client = api.Client(cfg.api_base_url, cfg.connect_timeout_seconds, cfg.read_timeout_seconds, deadline)
    try:
        token = cached_token(cfg)
        if cfg.warmup_url:
            progress.phase = "warm-up"
            client.warmup(cfg.warmup_url)
        if token is None:
            token = login(client, cfg, progress)
        if args.dry_run:
            return dry_run(cfg)
        try:
            body = notify(client, cfg, token, progress)
        except api.Refused as refused:
            log.warning("%s: logging in again and resending once (the server refused before acting)", refused)
            token_cache.drop(cfg.token_path)
            token = login(client, cfg, progress)
            try:
                body = notify(client, cfg, token, progress)
            except api.Refused:
                token_cache.drop(cfg.token_path)  # refused again: keep no token the server refuses
                raise
        return summarize(body)
    except api.ApiError as exc:
        return Outcome(exc.exit_code, "failed", str(exc))
    finally:
        client.close()


def cached_token(cfg: Config) -> token_cache.Token | None:
    from . import token_cache

    try:
        token = token_cache.load(cfg.token_path)
    except token_cache.CacheUnreadable as why:
        log.warning("token cache %s %s: ignoring it and logging in", cfg.token_path, why)
        return None
    if token is None:
        log.info("no cached token: logging in")
        return None
    add_secret(token.token)
    if not token_cache.is_fresh(token, time.time(), cfg.refresh_margin_seconds, cfg.api_base_url, cfg.username):
        log.info("cached token is expired, about to expire, or for another user or URL: logging in")
        return None
    log.info("using cached token (%ds left)", token.expires_at - time.time())
    return token


CLOCK_SKEW_NOTE_SECONDS = 120


def login(client: Any, cfg: Config, progress: Progress) -> token_cache.Token:
    from . import api, token_cache

    progress.phase = "login"
    body = client.login(cfg.username, cfg.password)
    now, server_now = time.time(), token_cache.http_date(getattr(client, "server_date", None))
    if server_now is not None and abs(now - server_now) > CLOCK_SKEW_NOTE_SECONDS:
        log.info("this host's clock is %+.0fs off the API's (its Date header); the token's lifetime is "
                 "measured on the API's clock", now - server_now)
    try:
        token = token_cache.token_from_login(body, now, cfg.api_base_url, cfg.username, server_now)
    except token_cache.BadLoginAnswer as exc:
        raise api.UnexpectedAnswer(f"login: {exc}") from None
    add_secret(token.token)
    left = token.expires_at - time.time()
    if token_cache.worth_caching(token):
        try:
            token_cache.save(cfg.token_path, token)
        except OSError as exc:
            log.warning("cannot write token cache %s (%s): the next run logs in again", cfg.token_path, exc.strerror)
    else:
        log.warning("login gave a token with no lifetime left (%ds): using it once, not caching it", left)
    log.info("logged in as %s; token valid for %ds", cfg.username, left)
    return token


def notify(client: Any, cfg: Config, token: token_cache.Token, progress: Progress) -> Any:
    progress.phase, progress.notify_in_flight = "notify", True
    try:
        body = client.notify(token.token, cfg.threshold_minutes)
    except Exception:  # an ApiError says itself whether anything was sent
        progress.notify_in_flight = False
        raise
    # Not in a `finally`: the deadline (DeadlineExceeded) or SIGTERM (Terminated) arriving mid-call must
    # leave the flag set, so guarded_send reports "outcome unknown, not resent" and not "nothing was sent".
    progress.notify_in_flight = False
    return body


def _one_line(value: Any, limit: int = 200) -> str:
    """Server text for our one-line messages: whitespace (newlines too) collapsed, cut at `limit`."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(body: Any) -> Outcome:
    """Turn the notify answer into an Outcome. Never reads `request_curl`: it holds device tokens."""
    from .records import Counts, Outcome

    if not isinstance(body, dict):
        return Outcome(EX_PROTOCOL, "failed", f"notify: answer is a JSON {type(body).__name__}, not an object")
    if body.get("success") is False:
        return Outcome(EX_UNAVAILABLE, "failed",
                       f"notify: API answered success=false: {_one_line(body.get('message'))}")
    keys = ("total_employees", "notifications_sent", "notifications_failed")
    values = [body.get(k) for k in keys]
    if body.get("success") is not True or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return Outcome(EX_PROTOCOL, "failed", "notify: answer lacks success=true or the counts "
                       "total_employees, notifications_sent, notifications_failed")
    counts = Counts(*values)
    message = f"Notification summary: {counts.employees} employees processed, {counts.sent} sent, {counts.failed} failed"
    failed = [entry for entry in body.get("notifications_detail") or []
              if isinstance(entry, dict) and entry.get("response_code") != 200]
    if failed or counts.failed:
        listed = ", ".join(f"{e.get('employee_id')} (code {e.get('response_code')})" for e in failed)
        log.warning("push failed for %d employee(s): %s (server-side push failures; exit 0)",
                    counts.failed, listed or "no details given")
    return Outcome(EXIT_OK, "sent", message, counts)


def dry_run(cfg: Config) -> Outcome:
    import json

    from .records import Outcome

    url = f"{cfg.api_base_url}/notifications/notify-absence"
    print(f"POST {url}\nAuthorization: Bearer <token>\nContent-Type: application/json\n\n"
          f"{json.dumps({'threshold': cfg.threshold_minutes})}")
    return Outcome(EXIT_OK, "dry-run", f"dry run: would POST threshold={cfg.threshold_minutes} to {url}; nothing sent")


def report(result: Outcome) -> None:
    level = logging.INFO if result.exit_code == EXIT_OK else logging.ERROR
    log.log(level, "%s%s", result.message, "" if result.exit_code == EXIT_OK else f" (exit {result.exit_code})")


def finish(cfg: Config, result: Outcome, started: float, previous: records.RunRecord | None,
           deadline: Deadline) -> None:
    """While still holding the lock: the run record, the metrics file, the final ping."""
    from . import records

    finished = time.time()
    record = records.make_record(started, finished, cfg.tz, result, previous)
    try:
        records.save_last_run(cfg.last_run_path, record)
    except OSError as exc:
        log.warning("cannot write run record %s (%s)", cfg.last_run_path, exc.strerror)
    if cfg.metrics_file:
        try:
            records.write_metrics(cfg.metrics_file, record, finished)
        except OSError as exc:
            log.warning("cannot write metrics file %s (%s)", cfg.metrics_file, exc.strerror)
    if cfg.ping_url:
        suffix = "" if result.exit_code == EXIT_OK else f"/{result.exit_code}"
        records.ping(cfg.ping_url, suffix, result.message, min(records.PING_TIMEOUT_SECONDS, deadline.remaining()))


# --- --check and --status -------------------------------------------------------------------------

def check(cfg: Config) -> int:
    """Validate config and paths, print what they resolve to. No network, no lock."""
    problems = []
    for label, folder in (("cache_dir", cfg.cache_dir), ("log file folder", cfg.log_file.parent if cfg.log_file else None),
                          ("metrics_file folder", cfg.metrics_file.parent if cfg.metrics_file else None)):
        if folder is not None and not _creatable(folder):
            problems.append(f"{label} {folder} cannot be created or written")
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
        print(f"{PROG}: config error: {cfg.path}: {problem}", file=sys.stderr)
    if problems:
        return EX_CONFIG
    print("config OK")
    return EXIT_OK


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
    import json

    from . import records, token_cache

    now = time.time()
    record = records.load_last_run(cfg.last_run_path)
    try:
        token = token_cache.load(cfg.token_path)
    except token_cache.CacheUnreadable:
        token = None
    holder = records.lock_holder(cfg.lock_path)
    ok = record is not None and record.exit_code == EXIT_OK
    doc = {
        "ok": ok,
        "last_run": None if record is None else {
            "started_at": record.started_at, "finished_at": record.finished_at,
            "duration_seconds": record.duration_seconds, "outcome": record.outcome,
            "exit_code": record.exit_code, "message": record.message, "counts": record.counts},
        "last_success_at": record.last_success_at if record else None,
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
    left = doc["token_seconds_left"]
    print("token:        " + ("none cached" if left is None else f"{left}s left" if left > 0 else "expired"))
    print("lock:         " + (f"held by pid {holder} (a run is in progress)" if holder else "free"))
    return EXIT_OK if ok else STATUS_NOT_OK
