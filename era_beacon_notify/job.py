"""The work done under the lock: token, one notification, the run record, monitoring.

Imported only by runs that took the lock. `requests` (through api.py) is imported only when the
run reaches the API, so a run stopped by the repeat guard never pays for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from . import records, token_cache
from .config import Config
from .exits import EX_PROTOCOL, EX_SOFTWARE, EX_UNAVAILABLE, EXIT_OK, Stop, missing_dependency
from .files import remove_stale_temp_files
from .logs import add_secret, log_bug, one_line, redact
from .records import Counts, Outcome
from .runtime import Deadline, DeadlineExceeded, Terminated

log = logging.getLogger("era_beacon_notify")


def run_locked(cfg: Config, args: argparse.Namespace, deadline: Deadline) -> int:
    """Everything after the lock, with a run record written (still under the lock) however it ends."""
    started = time.time()
    remove_stale_temp_files(cfg.cache_dir)
    previous = records.load_last_run(cfg.last_run_path)
    result = guarded_send(cfg, args, deadline, previous)
    deadline.disarm()
    result.message = redact(result.message)  # it goes to the run record, --status and the ping too
    report(result)
    if not args.dry_run:
        finish(cfg, result, started, previous)
    return result.exit_code


def guarded_send(cfg: Config, args: argparse.Namespace, deadline: Deadline,
                 previous: records.RunRecord | None) -> Outcome:
    """`send`, with every way it can end turned into an Outcome (so a record is always written).

    `Outcome.notified` says whether employees may have been notified: the repeat guard counts such a
    run as a send even when it failed afterwards, so the next run within min_gap_minutes skips.
    """
    progress = Progress()
    try:
        result = checked_send(cfg, args, deadline, previous, progress)
    except Stop as stop:
        result = Outcome(stop.exit_code, "failed", str(stop))
    except DeadlineExceeded as exc:
        result = Outcome(EX_UNAVAILABLE, "failed", f"{exc} {progress.interrupted()}")
    except Terminated as stop:
        result = Outcome(stop.exit_code, "terminated", f"{stop} {progress.interrupted()}")
    except Exception as exc:  # noqa: BLE001 - a bug still gets its run record, under the lock
        result = Outcome(EX_SOFTWARE, "failed", log_bug(exc))
    result.notified = progress.notify != "not sent"
    return result


def checked_send(cfg: Config, args: argparse.Namespace, deadline: Deadline, previous: records.RunRecord | None,
                 progress: Progress) -> Outcome:
    """The repeat guard and the start ping, then `send`."""
    gap = recent_notify(previous, time.time(), cfg.min_gap_minutes)
    if gap is not None and not (args.force or args.dry_run):
        return Outcome(EXIT_OK, "skipped", f"skipped: the last send was {gap:.0f}s ago, within "
                       f"min_gap_minutes={cfg.min_gap_minutes}; --force sends anyway")
    if cfg.ping_url and not args.dry_run:
        progress.phase = "start ping"
        records.ping(cfg.ping_url, "/start", f"run started at {records.iso(time.time(), cfg.tz)}")
    return send(cfg, args, deadline, progress)


class Progress:
    """Where the run is, so an interruption can say whether a notification may have gone out."""

    phase = "start"
    notify = "not sent"  # -> "in flight" -> "answered" (acted on), or "maybe sent" (failed after sending)

    def interrupted(self) -> str:
        if self.notify == "in flight":
            return "while waiting for the notify answer: outcome unknown, not resent (a duplicate would reach employees)"
        if self.notify == "answered":
            return "after the notify was answered: notifications went out; do not resend"
        return f"during {self.phase}; nothing was sent"


def recent_notify(previous: records.RunRecord | None, now: float, min_gap_minutes: int) -> float | None:
    """Seconds since the last run that may have notified employees, when within the gap; else None.

    Compared as an absolute difference: a clock set back an hour must not block runs for an hour.
    """
    last = records.iso_to_epoch(previous.last_notify_at) if previous else None
    if last is None or min_gap_minutes <= 0:
        return None
    ago = now - last
    return ago if abs(ago) < min_gap_minutes * 60 else None


# --- the API work ---------------------------------------------------------------------------------

def send(cfg: Config, args: argparse.Namespace, deadline: Deadline, progress: Progress) -> Outcome:
    try:
        from . import api  # imports requests: only runs that reach the API pay for it
    except ImportError as exc:
        raise missing_dependency(exc) from None

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
    from . import api

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
    from . import api

    progress.phase, progress.notify = "notify", "in flight"
    try:
        body = client.notify(token.token, cfg.threshold_minutes)
    except api.ApiError as exc:
        progress.notify = "maybe sent" if exc.acted else "not sent"
        raise
    # A deadline or SIGTERM during the call leaves "in flight": guarded_send then reports
    # "outcome unknown, not resent", never "nothing was sent".
    progress.notify = "answered"
    return body


def summarize(body: Any) -> Outcome:
    """Turn a 2xx notify answer into an Outcome. Never reads `request_curl`: it holds device tokens.

    The server acted on a 2xx whatever its body says, so an unusable body is a failure (exit 76)
    that still counts as a send: its message says so, lest someone resends by hand.
    """
    went_out = "the server accepted the notify (2xx), so notifications went out; do not resend"  # as api.py says
    if not isinstance(body, dict):
        return Outcome(EX_PROTOCOL, "failed", f"notify: answer is a JSON {type(body).__name__}, not an object: {went_out}")
    if body.get("success") is False:
        return Outcome(EX_UNAVAILABLE, "failed", f"notify: API answered success=false: {one_line(body.get('message'), 200)}")
    values = [body.get(k) for k in ("total_employees", "notifications_sent", "notifications_failed")]
    if body.get("success") is not True or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return Outcome(EX_PROTOCOL, "failed", "notify: answer lacks success=true or the counts total_employees, "
                       f"notifications_sent, notifications_failed: {went_out}")
    counts = Counts(*values)
    message = f"Notification summary: {counts.employees} employees processed, {counts.sent} sent, {counts.failed} failed"
    details = body.get("notifications_detail")
    failed = [entry for entry in (details if isinstance(details, list) else [])
              if isinstance(entry, dict) and entry.get("response_code") != 200]
    if failed or counts.failed:
        listed = ", ".join(f"{one_line(e.get('employee_id'), 40)} (code {one_line(e.get('response_code'), 10)})"
                           for e in failed[:50])
        more = f" and {len(failed) - 50} more" if len(failed) > 50 else ""
        log.warning("push failed for %d employee(s): %s%s (server-side push failures; exit 0)",
                    counts.failed, listed or "no details given", more)
    return Outcome(EXIT_OK, "sent", message, counts)


def dry_run(cfg: Config) -> Outcome:
    url = f"{cfg.api_base_url}/notifications/notify-absence"
    print(f"POST {url}\nAuthorization: Bearer <token>\nContent-Type: application/json\n\n"
          f"{json.dumps({'threshold': cfg.threshold_minutes})}")
    return Outcome(EXIT_OK, "dry-run", f"dry run: would POST threshold={cfg.threshold_minutes} to {url}; nothing sent")


def report(result: Outcome) -> None:
    level = logging.INFO if result.exit_code == EXIT_OK else logging.ERROR
    log.log(level, "%s%s", result.message, "" if result.exit_code == EXIT_OK else f" (exit {result.exit_code})")


def finish(cfg: Config, result: Outcome, started: float, previous: records.RunRecord | None) -> None:
    """While still holding the lock: the run record, the metrics file, the final ping."""
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
        records.ping(cfg.ping_url, "" if result.exit_code == EXIT_OK else f"/{result.exit_code}", result.message)
