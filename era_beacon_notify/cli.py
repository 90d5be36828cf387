"""The run at a glance: command line, config, logging, business hours, the lock, then the work.

Everything a run needs before it knows whether it will send lives here, and stays light: a run
skipped outside business hours imports neither `filelock` nor `requests`, and a lock-busy run never
imports `requests` (bench/results.md has the figures). The work under the lock is in job.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import Config, ConfigError, load_config
from .exits import (EX_CANTCREAT, EX_CONFIG, EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, EXIT_OK, Stop,
                    missing_dependency)
from .logs import PROG, add_secret, log_bug, setup_logging, watch_rotation
from .runtime import Deadline, DeadlineExceeded, Terminated, raise_on_sigterm
from .schedule import local_now, skip_reason

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms of every run)
if TYPE_CHECKING:
    from typing import Any, NoReturn

log = logging.getLogger("era_beacon_notify")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.ini"  # beside notify_once.py, not the cwd


# --- command line ---------------------------------------------------------------------------------

def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, told the width: otherwise each add_argument imports shutil (with zlib,
    bz2 and lzma: ~3 ms of every run) only to ask for the terminal's width."""
    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2; sysexits says 64
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog=PROG, description="Send one Era Beacon absence notification (run by cron every 30 minutes).",
                formatter_class=_help_formatter)
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


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Signals that land outside the API calls (those are handled in job.py) end in one line too."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `--check | head`: the reader left; say nothing more to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, the shell's convention
    except (Terminated, DeadlineExceeded) as stop:
        code = stop.exit_code if isinstance(stop, Terminated) else EX_UNAVAILABLE
        if logging.getLogger().handlers:  # logging is set up once the config is read
            log.error("%s; no API call was in flight (exit %d)", stop, code)
        else:
            print(f"{PROG}: {stop}; nothing was sent (exit {code})", file=sys.stderr)
        return code


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
    if args.check or args.status:
        from . import status

        try:
            code = status.check(cfg) if args.check else status.status(cfg, as_json=args.json)
            sys.stdout.flush()  # a closed pipe shows here (see main), not as a traceback at exit
            return code
        except BrokenPipeError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line, as for a run
            print(f"{PROG}: internal error (a bug): {type(exc).__name__}: {exc} (exit {EX_SOFTWARE})", file=sys.stderr)
            return EX_SOFTWARE
    skip = None if args.force else skip_reason(local_now(cfg.tz), cfg.weekday_start_hour,
                                                cfg.weekday_end_hour, cfg.skip_dates)
    try:
        setup_logging(cfg.log_level, cfg.log_format, cfg.log_file, args.verbose, args.quiet)
    except OSError as exc:
        print(f"{PROG}: cannot open log file {cfg.log_file}: {exc.strerror or exc}", file=sys.stderr)
        return EX_CANTCREAT
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if skip:
        log.info("skipped: %s (timezone %s); --force runs anyway", skip, cfg.timezone or "local")
        return EXIT_OK
    try:
        return run(cfg, args)
    except Stop as stop:
        log.log(logging.WARNING if stop.exit_code == EX_TEMPFAIL else logging.ERROR, "%s", stop)
        return stop.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug must still exit cleanly
        log.critical("%s (exit %d)", log_bug(exc), EX_SOFTWARE)
        return EX_SOFTWARE


def run(cfg: Config, args: argparse.Namespace) -> int:
    """The hard deadline and the lock around the work; both are released however the work ends."""
    deadline = Deadline(cfg.max_run_seconds)
    deadline.arm()
    try:
        lock = take_lock(cfg)
        try:
            watch_rotation()  # from here on the run may last minutes
            from . import job  # only runs that hold the lock load the rest of the program

            return job.run_locked(cfg, args, deadline)
        finally:
            lock.release()
    finally:
        deadline.disarm()


def take_lock(cfg: Config) -> Any:
    """A non-blocking filelock on cache/notify_once.lock: Stop(75) when busy, Stop(73) when impossible."""
    try:
        cfg.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # mkdir(exist_ok=True) raises this only when the path is not a folder
        raise Stop(EX_CANTCREAT, f"cannot create cache folder {cfg.cache_dir}: it exists and is not a folder") from None
    except OSError as exc:
        raise Stop(EX_CANTCREAT, f"cannot create cache folder {cfg.cache_dir}: {exc.strerror or exc}") from None
    try:
        import filelock  # not needed by runs skipped outside business hours
    except ImportError as exc:
        raise missing_dependency(exc) from None

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
