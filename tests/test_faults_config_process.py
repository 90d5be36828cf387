"""Fault matrix (issue 3): configuration end to end, and the process (signals, kill -9, clock, TZ).

Pure parsing tables live in tests/test_config.py; here every case runs the real script and checks
the exit code, one clear stderr line, no HTTP for config errors, no duplicate notify, the token
cache left whole, and no traceback or secret anywhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import threading
import time

import pytest

from conftest import BUSINESS_TIME, PASSWORD, USERNAME, finish, jakarta, wait_for
from faults import (assert_clean, assert_valid_token_file, cache_doc, cached, err_lines, one_line, plant,
                    pushes_succeed, temp_files)  # noqa: F401 (pushes_succeed: an autouse fixture)
from standin import hang, hold, status

pytestmark = pytest.mark.timeout(60)


# --- config errors: exit 78, one line naming the file and the key, no HTTP ------------------------

def _text(job, old, new):
    text = job.config_text()
    assert old in text
    return text.replace(old, new, 1)


# (id, how to break the config: a dict for write_config, or a function of job returning the text,
#  the fragment the line must name)
BAD_CONFIGS = [
    ("missing_file", "absent", "config file not found"),
    ("config_is_a_folder", "folder", "cannot read config file"),
    ("not_utf8", lambda job: job.config_text().replace("era_user", "\xe9ra_user").encode("latin-1"),
     "cannot read config file"),
    ("no_section_header", lambda job: job.config_text().replace("[scheduler]\n", ""), "not a valid INI file"),
    ("missing_section_logging", lambda job: job.config_text().split("[logging]")[0], "[logging]"),
    ("missing_section_scheduler", lambda job: "[logging]\nlevel = INFO\n", "[scheduler]"),
    ("duplicate_section", lambda job: job.config_text() + "[logging]\nlevel = INFO\n", "[logging]"),
    ("missing_threshold", {"threshold_minutes": None}, "threshold_minutes"),
    ("missing_api_base_url", {"api_base_url": None}, "api_base_url"),
    ("missing_start_hour", {"weekday_start_hour": None}, "weekday_start_hour"),
    ("missing_log_level", "no_level", "level"),
    ("threshold_not_integer", {"threshold_minutes": "thirty"}, "threshold_minutes"),
    ("threshold_float", {"threshold_minutes": "30.5"}, "threshold_minutes"),
    ("threshold_zero", {"threshold_minutes": "0"}, "threshold_minutes"),
    ("threshold_negative", {"threshold_minutes": "-5"}, "threshold_minutes"),
    ("start_hour_negative", {"weekday_start_hour": "-1"}, "weekday_start_hour"),
    ("end_hour_25", {"weekday_end_hour": "25"}, "weekday_end_hour"),
    ("start_after_end", {"weekday_start_hour": "18", "weekday_end_hour": "9"}, "weekday_end_hour"),
    ("start_equals_end", {"weekday_start_hour": "9", "weekday_end_hour": "9"}, "weekday_end_hour"),
    ("timeout_zero", {"connect_timeout_seconds": "0"}, "connect_timeout_seconds"),
    ("max_run_not_integer", {"max_run_seconds": "1h"}, "max_run_seconds"),
    ("unknown_timezone", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("timezone_path", {"timezone": "../../../etc/passwd"}, "timezone"),
    ("url_ftp", {"api_base_url": "ftp://127.0.0.1/v1"}, "api_base_url"),
    ("url_no_scheme", {"api_base_url": "127.0.0.1:8000/v1"}, "api_base_url"),
    ("url_no_host", {"api_base_url": "http:///v1"}, "api_base_url"),
    ("url_empty", {"api_base_url": ""}, "api_base_url"),
    ("duplicate_key", lambda job: _text(job, "[scheduler]\n", "[scheduler]\nthreshold_minutes = 5\n"),
     "threshold_minutes"),
    ("duplicate_password", lambda job: _text(job, "[scheduler]\n", "[scheduler]\nauth_password = other\n"),
     "auth_password"),
    ("empty_password", {"auth_password": ""}, "auth_password"),
    ("missing_password", {"auth_password": None}, "auth_password"),
    ("empty_username", {"auth_username": ""}, "auth_username"),
    ("password_line_without_equals", lambda job: _text(job, f"auth_password = {PASSWORD}",
                                                       f"auth_password {PASSWORD}"), "not a valid INI file"),
    ("log_level_unknown", "bad_level", "level"),
    ("log_format_unknown_field", "bad_format", "format"),
]


def _break(job, how):
    if how == "absent":
        job.config = job.dir / "absent.ini"
    elif how == "folder":
        job.config = job.dir / "folder.ini"
        job.config.mkdir()
    elif how in ("no_level", "bad_level", "bad_format"):
        job.write_config(logging={"no_level": {"level": None}, "bad_level": {"level": "LOUD"},
                                  "bad_format": {"format": "%(asctime)s %(nosuchfield)s"}}[how])
    elif isinstance(how, dict):
        job.write_config(scheduler=how)
    else:
        text = how(job)
        if isinstance(text, bytes):
            job.config.write_bytes(text)
        else:
            job.write_config(text=text)


@pytest.mark.parametrize("how, names", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_config_error_exits_78_with_one_line_and_no_http(job, api, how, names):
    _break(job, how)
    r = job.run("--force")
    assert r.code == 78, r.all
    line = one_line(r, "config error", str(job.config), names)
    assert r.out == "" and r.log == ""
    assert api.requests == []
    assert not job.cache.exists()
    assert PASSWORD not in line and "other" not in line.split(":")[-1]
    assert_clean(r, api)


def test_config_error_is_the_same_under_check(job, api):
    job.write_config(scheduler={"weekday_end_hour": "25"})
    r = job.run("--check")
    assert r.code == 78
    one_line(r, str(job.config), "weekday_end_hour")
    assert api.requests == []


def _log_under_file(job):
    (job.dir / "blocker").write_text("a regular file\n")
    return "blocker/notify_once.log"


def _log_is_folder(job):
    (job.dir / "logdir.log").mkdir()
    return "logdir.log"


def _log_folder_missing(job):
    return "no/such/folder/notify_once.log"


@pytest.mark.parametrize("where", [_log_under_file, _log_is_folder, _log_folder_missing],
                         ids=["under_a_file", "is_a_folder", "folder_missing"])
def test_log_file_impossible_exits_73_without_http(job, api, where):
    job.write_config(logging={"file": where(job)})
    r = job.run("--force")
    assert r.code == 73, r.all
    one_line(r, "cannot open log file", str(job.dir))
    assert api.requests == [] and not job.cache.exists()
    assert_clean(r, api)


# --- config that must work: BOM, CRLF, `%`, environment overrides --------------------------------

def test_bom_and_crlf_work(job, api):
    job.config.write_bytes(b"\xef\xbb\xbf" + job.config_text().replace("\n", "\r\n").encode())
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.requests[0].json == {"username": USERNAME, "password": PASSWORD}  # no stray \r or BOM
    assert api.count("notify") == 1
    assert_valid_token_file(job, api)
    assert_clean(r, api)


@pytest.mark.parametrize("encoding, newline", [("utf-8-sig", "\n"), ("utf-8", "\r\n"), ("utf-8", "\r")],
                         ids=["bom", "crlf", "cr_only"])
def test_bom_or_odd_line_ends_alone(job, api, encoding, newline):
    job.config.write_bytes(job.config_text().replace("\n", newline).encode(encoding))
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.requests[0].json["password"] == PASSWORD


PERCENT_PASSWORD = "p%40ss%(x)s%%%"


@pytest.mark.parametrize("field", ["password", "log_format", "cache_dir", "username"])
def test_percent_in_values_works(job, api, field):
    password, username = PASSWORD, USERNAME
    scheduler, logging = {}, {}
    if field == "password":
        password = PERCENT_PASSWORD
        scheduler["auth_password"] = password
    elif field == "username":
        username = "era%user"
        scheduler["auth_username"] = username
    elif field == "log_format":
        logging["format"] = "%(levelname)s 100%% sure: %(message)s"
    else:
        scheduler["cache_dir"] = "cache%1"
    api.users = {username: password}
    job.write_config(scheduler=scheduler, logging=logging)
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.requests[0].json == {"username": username, "password": password}
    assert api.count("notify") == 1
    if field == "log_format":
        assert "INFO 100% sure: " in r.log
    if field == "cache_dir":
        assert (job.dir / "cache%1" / "token.json").is_file()
    assert_clean(r, api, password)


ENV_PASSWORD = "Env%Pass-2025!"

# (id, file keys to remove or change, environment)
ENV_OVERRIDES = [
    ("both_from_env", {"auth_username": None, "auth_password": None},
     {"ERA_BEACON_USERNAME": "env_user", "ERA_BEACON_PASSWORD": ENV_PASSWORD}),
    ("password_from_env", {"auth_username": "env_user", "auth_password": None},
     {"ERA_BEACON_PASSWORD": ENV_PASSWORD}),
    ("password_key_empty", {"auth_username": "env_user", "auth_password": ""},
     {"ERA_BEACON_PASSWORD": ENV_PASSWORD}),
    ("env_beats_file", {"auth_username": "file_user", "auth_password": "wrong"},
     {"ERA_BEACON_USERNAME": "env_user", "ERA_BEACON_PASSWORD": ENV_PASSWORD}),
]


@pytest.mark.parametrize("scheduler, env", [c[1:] for c in ENV_OVERRIDES], ids=[c[0] for c in ENV_OVERRIDES])
def test_environment_credentials(job, api, scheduler, env):
    api.users = {"env_user": ENV_PASSWORD}
    job.write_config(scheduler=scheduler)
    r = job.run("--force", env=env)
    assert r.code == 0 and r.err == "", r.all
    assert api.requests[0].json == {"username": "env_user", "password": ENV_PASSWORD}
    assert api.count("login") == 1 and api.count("notify") == 1
    assert cached(job)["username"] == "env_user"
    check = job.run("--check", env=env)
    assert check.code == 0 and "from ERA_BEACON_PASSWORD" in check.out
    assert_clean(r, api, ENV_PASSWORD)
    assert_clean(check, api, ENV_PASSWORD)


def test_environment_password_missing_too_is_a_config_error(job, api):
    job.write_config(scheduler={"auth_password": None})
    r = job.run("--force", env={"ERA_BEACON_PASSWORD": ""})
    assert r.code == 78
    one_line(r, str(job.config), "auth_password", "ERA_BEACON_PASSWORD")
    assert api.requests == []


# --- warnings, not failures ----------------------------------------------------------------------

# (id, scheduler overrides, config mode, the warning's fragment or None, modes to run in)
WARNINGS = [
    ("plain_http_remote", {"api_base_url": "http://era-beacon.example.com/v1"}, 0o600, "plain http",
     ["--check"]),
    ("https_remote", {"api_base_url": "https://era-beacon.example.com/v1"}, 0o600, None, ["--check"]),
    ("http_localhost", {"api_base_url": "http://localhost:9/v1"}, 0o600, None, ["--check"]),
    ("config_group_readable", {}, 0o640, "chmod 600", ["--check", "--force"]),
    ("config_world_readable", {}, 0o604, "chmod 600", ["--check", "--force"]),
    ("readable_but_no_password", {"auth_password": None}, 0o644, None, ["--check", "--force"]),
    ("timezone_missing", {"timezone": None}, 0o600, "timezone is not set", ["--check", "--force"]),
]


@pytest.mark.parametrize("scheduler, mode, warning, runs", [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_config_warnings_do_not_fail(job, api, scheduler, mode, warning, runs):
    env = {"ERA_BEACON_PASSWORD": PASSWORD} if scheduler.get("auth_password", "") is None else {}
    job.write_config(scheduler=scheduler)
    job.config.chmod(mode)
    for args in runs:
        r = job.run(args, env=env)
        assert r.code == 0, r.all
        if warning is None:
            assert r.err == ""
        else:
            one_line(r, "WARNING" if args == "--force" else "warning", str(job.config), warning)
        if args == "--check":
            assert "config OK" in r.out
        elif warning:
            assert warning in r.log
        assert_clean(r, api)
    assert api.count("notify") == runs.count("--force")


# --- the process: SIGTERM, kill -9, the clock, TZ --------------------------------------------------

def _lock_is_free(job) -> bool:
    fd = os.open(job.cache / "notify_once.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("route, says", [("notify", "outcome unknown"), ("login", "during login")])
def test_sigterm_mid_call_exits_143_promptly_and_frees_the_lock(job, api, route, says):
    api.inject(route, hang())
    proc = job.popen("--force")
    assert wait_for(lambda: api.count(route) == 1), "the run never reached " + route
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = finish(proc, job, timeout=10)
    assert time.monotonic() - started < 3
    assert r.code == 143, r.all
    one_line(r, "SIGTERM", says)
    assert api.notify_processed == 0
    assert _lock_is_free(job)
    assert json.loads(job.last_run.read_text())["exit_code"] == 143
    again = job.run("--force")
    assert again.code == 0 and again.err == "", again.all
    assert api.notify_processed == 1
    assert_clean(r, api)
    assert_clean(again, api)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGHUP, 129)], ids=["SIGINT", "SIGHUP"])
def test_other_stop_signals_during_notify_end_like_sigterm(job, api, sig, code):
    """Ctrl-C on a manual run, or its terminal closing: the same clean end as SIGTERM, 128 + signal."""
    api.inject("notify", hang())
    proc = job.popen("--force")
    assert wait_for(lambda: api.count("notify") == 1)
    proc.send_signal(sig)
    r = finish(proc, job, timeout=10)
    assert r.code == code, r.all
    one_line(r, sig.name, "outcome unknown", f"(exit {code})")
    assert _lock_is_free(job)
    assert json.loads(job.last_run.read_text())["exit_code"] == code
    assert_clean(r, api)


def test_sigterm_outside_the_api_calls_is_one_line(job, api):
    """SIGTERM while the monitoring start ping hangs: under the lock, but before any API call."""
    job.write_config(extra=f"\n[monitoring]\nping_url = {api.url}/ping/abc\n")
    api.inject("other", hang())
    proc = job.popen("--force")
    assert wait_for(lambda: api.count("other") == 1)
    proc.send_signal(signal.SIGTERM)
    r = finish(proc, job, timeout=10)
    assert r.code == 143, r.all
    one_line(r, "SIGTERM", "(exit 143)")
    assert "before the lock" not in r.err
    assert api.count("login") == 0 and api.count("notify") == 0
    assert _lock_is_free(job)
    assert_clean(r, api)


@pytest.mark.parametrize("old_cache", [False, True], ids=["no_old_cache", "old_cache"])
def test_kill9_during_token_write_leaves_old_or_nothing(job, api, tmp_path, old_cache):
    old = plant(job.token_file, cache_doc(api, expires_at=int(time.time()) - 60)) if old_cache else None
    marker = tmp_path / "paused"
    proc = job.popen("--force", env={"ERA_TEST_PAUSE_BEFORE_REPLACE": "token.json",
                                     "ERA_TEST_PAUSE_MARKER": str(marker)})
    assert wait_for(marker.exists), "the run never reached the token write"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert temp_files(job.cache), "the kill should have left the temp file behind"
    if old is None:
        assert not job.token_file.exists()
    else:
        assert job.token_file.read_bytes() == old
    assert api.count("notify") == 0
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 2 and api.notify_processed == 1
    assert_valid_token_file(job, api)  # also: no temp file left
    assert_clean(r, api)


def test_kill9_during_run_record_write_next_run_works(job, api, tmp_path):
    marker = tmp_path / "paused"
    proc = job.popen("--force", env={"ERA_TEST_PAUSE_BEFORE_REPLACE": "last_run.json",
                                     "ERA_TEST_PAUSE_MARKER": str(marker)})
    assert wait_for(marker.exists)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert not job.last_run.exists() and temp_files(job.cache)
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 1  # the killed run's token was saved whole and is reused
    assert json.loads(job.last_run.read_text())["outcome"] == "sent"
    assert temp_files(job.cache) == []


def test_kill9_during_notify_next_run_works(job, api):
    release = threading.Event()
    api.inject("notify", hold(release))
    proc = job.popen("--force")
    try:
        assert wait_for(lambda: api.count("notify") == 1)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        release.set()
    r = job.run("--force")
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 1  # the token cached before the kill is whole and reused
    assert api.count("notify") == 2
    assert_valid_token_file(job, api)
    assert_clean(r, api)


def test_clock_forward_an_hour_counts_the_token_expired(job, api):
    first = job.run("--force")
    assert first.code == 0 and api.count("login") == 1
    ahead = {"ERA_TEST_TIME_OFFSET": "3600"}
    r = job.run("--force", env=ahead)
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 2 and api.count("notify") == 2 and api.notify_processed == 2
    # The new token's lifetime is measured on the API's clock (its Date header), so it is cached
    # for its real 30 minutes on our shifted clock, and the next run (still an hour ahead) reuses it.
    doc = assert_valid_token_file(job, api, clock_offset=3600)
    assert 1700 < doc["expires_at"] - (time.time() + 3600) <= 1800
    assert re.search(r"clock is \+(3599|3600|3601)s off the API's", r.log), r.log
    again = job.run("--force", env=ahead)
    assert again.code == 0 and again.err == "" and api.count("login") == 2
    assert_clean(r, api)


def test_clock_back_an_hour_uses_the_token(job, api):
    first = job.run("--force")
    assert first.code == 0
    r = job.run("--force", env={"ERA_TEST_TIME_OFFSET": "-3600"})
    assert r.code == 0 and r.err == "", r.all
    assert api.count("login") == 1 and api.count("notify") == 2
    assert_clean(r, api)


@pytest.mark.parametrize("refusal", ["expired_on_server", "status_401"])
def test_clock_back_token_refused_relogs_and_sends_once(job, api, refusal):
    now = int(time.time())
    if refusal == "expired_on_server":
        # The server's clock says this token is past its exp; ours, an hour back, says 50 minutes left.
        plant(job.token_file, cache_doc(api, token=api.make_token(exp=now - 10), expires_at=now - 10))
    else:
        plant(job.token_file, cache_doc(api, expires_at=now - 10))
        api.inject("notify", status(401, {"detail": "Could not validate credentials"},
                                    headers={"WWW-Authenticate": "Bearer"}))
    r = job.run("--force", env={"ERA_TEST_TIME_OFFSET": "-3600"})
    assert r.code == 0, r.all
    assert api.count("login") == 1 and api.count("notify") == 2 and api.notify_processed == 1
    one_line(r, "WARNING", "401", "logging in again")
    doc = assert_valid_token_file(job, api, clock_offset=-3600)
    assert 1700 < doc["expires_at"] - (time.time() - 3600) <= 1800  # on our clock, an hour back
    assert_clean(r, api)


WEDNESDAY_EVENING = jakarta("2026-12-02 20:00")
SATURDAY_MORNING = jakarta("2026-12-05 10:00")


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Etc/GMT+12", "America/Adak"])
@pytest.mark.parametrize("now, sends", [(BUSINESS_TIME, True), (WEDNESDAY_EVENING, False),
                                        (SATURDAY_MORNING, False)], ids=["wed_10", "wed_20", "sat_10"])
def test_tz_far_from_utc_does_not_move_business_hours(job, api, tz, now, sends):
    r = job.run(env={"TZ": tz, "ERA_TEST_NOW": str(now)})  # scheduled: no --force
    assert r.code == 0, r.all
    if sends:
        assert api.count("notify") == 1 and api.notify_processed == 1
        assert "Traceback" not in r.all and len(err_lines(r)) <= 1
    else:
        assert api.requests == [] and r.err == ""
        assert "skipped" in r.log
    assert_clean(r, api)


def test_tz_change_between_runs_keeps_the_cached_token(job, api):
    first = job.run("--force", env={"TZ": "Pacific/Kiritimati"})
    second = job.run("--force", env={"TZ": "Etc/GMT+12"})
    assert (first.code, second.code) == (0, 0), second.all
    assert api.count("login") == 1 and api.count("notify") == 2
    assert second.err == ""
    assert_clean(second, api)
