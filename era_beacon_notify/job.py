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
from .logs import add_secret, log_bug
from .records import Counts, Outcome
from .runtime import Deadline, DeadlineExceeded, Terminated

log = logging.getLogger("era_beacon_notify")


def run_locked(cfg: Config, args: argparse.Namespace, deadline: Deadline) -> int:
    """Everything after the lock, with a run record written (still under the lock) however it ends."""
    started = time.time()
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


def guarded_send(cfg: Config, args: argparse.Namespace, deadline: Deadline,
                 previous: records.RunRecord | None) -> Outcome:
    """`send`, with every way it can end turned into an Outcome (so a record is always written)."""
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
        return Outcome(EX_SOFTWARE, "failed", log_bug(exc))


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
