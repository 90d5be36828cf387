"""The main job end to end: the real script, as cron runs it, against the stand-in over HTTP.

One test (or table) per numbered step of the run, then the exit codes that no fault test covers.
"""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
import sys

import pytest

from conftest import BUSINESS_TIME, PASSWORD, ROOT, SCRIPT, USERNAME, Job, cron_env, jakarta

SCHEDULED = {"ERA_TEST_NOW": str(BUSINESS_TIME)}  # Wednesday 10:00 Jakarta


def notify_requests(api):
    return [r for r in api.requests if r.route == "notify"]


# --- step 1: umask and config ---------------------------------------------------------------------

def test_everything_a_run_creates_is_private(job: Job) -> None:
    result = job.run("--force")
    assert result.code == 0, result.err
    assert stat.S_IMODE(job.cache.stat().st_mode) == 0o700
    for path in (job.token_file, job.last_run, job.log_file, job.cache / "notify_once.lock"):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_default_config_is_the_one_beside_the_script_not_the_cwd(tmp_path) -> None:
    (tmp_path / "config.ini").write_text("[scheduler]\n")  # a decoy in the working directory
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=tmp_path, env=cron_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"{ROOT / 'config.ini'}" in proc.stdout
    assert "https://era-beacon-api.onrender.com/v1" in proc.stdout


def test_a_config_error_is_one_line_and_exit_78_before_anything_else(job: Job) -> None:
    job.write_config(scheduler={"threshold_minutes": "thirty"})
    result = job.run("--force")
    assert result.code == 78
    assert result.err.strip().count("\n") == 0 and "threshold_minutes" in result.err
    assert str(job.config) in result.err and "Traceback" not in result.err
    assert job.api.requests == [] and not job.cache.exists()


# --- step 2: business hours -------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["2026-12-02 08:59", "2026-12-02 18:00", "2026-12-05 10:00"])
def test_outside_business_hours_exits_0_before_lock_or_network(job: Job, moment: str) -> None:
    result = job.run(env={"ERA_TEST_NOW": str(jakarta(moment))})
    assert result.code == 0 and result.err == ""
    assert job.api.requests == []
    assert not job.cache.exists()  # not even the lock folder
    assert "skipped" in result.log


def test_inside_business_hours_a_scheduled_run_sends(job: Job) -> None:
    result = job.run(env=SCHEDULED)
    assert result.code == 0, result.err
    assert job.api.notify_processed == 1


def test_force_sends_outside_business_hours(job: Job) -> None:
    result = job.run("--force", env={"ERA_TEST_NOW": str(jakarta("2026-12-05 23:00"))})
    assert result.code == 0, result.err
    assert job.api.notify_processed == 1


def test_hours_are_checked_in_the_configured_zone_on_a_utc_server(job: Job) -> None:
    # 02:30 UTC on a Wednesday is 09:30 in Jakarta: inside hours, although the server says 02:30.
    at = jakarta("2026-12-02 09:30")
    assert job.run(env={"ERA_TEST_NOW": str(at), "TZ": "UTC"}).code == 0
    assert job.api.notify_processed == 1
    job.write_config(scheduler={"timezone": "UTC"})  # the same instant read as UTC: 02:30, outside
    job.run(env={"ERA_TEST_NOW": str(at + 3600)})
    assert job.api.notify_processed == 1


# --- steps 3 and 4: lock and token ---------------------------------------------------------------

def test_first_run_logs_in_second_reuses_the_cached_token(job: Job) -> None:
    first = job.run("--force")
    second = job.run("--force")
    assert (first.code, second.code) == (0, 0), first.err + second.err
    assert job.api.count("login") == 1 and job.api.count("notify") == 2
    issued = job.api.issued_tokens[0]
    assert [r.headers["authorization"] for r in notify_requests(job.api)] == [f"Bearer {issued}"] * 2
    assert [r.json for r in notify_requests(job.api)] == [{"threshold": 30}] * 2
    assert job.api.requests[0].json == {"username": USERNAME, "password": PASSWORD}
    cached = json.loads(job.token_file.read_text())
    assert cached["token"] == issued and cached["username"] == USERNAME
    assert cached["api_base_url"] == job.api.base_url
    assert abs(cached["expires_at"] - (cached["obtained_at"] + 1800)) <= 2  # from the JWT's exp
    assert "using cached token" in second.log


def test_a_token_about_to_expire_is_renewed_first(job: Job) -> None:
    job.api.token_lifetime = 50  # below refresh_margin_seconds (60)
    job.run("--force")
    job.run("--force")
    assert job.api.count("login") == 2
    job.write_config(scheduler={"refresh_margin_seconds": "10"})  # now ~50 s left is enough
    job.run("--force")
    job.run("--force")
    assert job.api.count("login") == 2 and job.api.notify_processed == 4


@pytest.mark.parametrize("change", [
    {"auth_username": "other_user"},
    {"api_base_url": "http://localhost:{port}/v1"},
])
def test_a_token_for_another_user_or_url_is_not_reused(job: Job, change: dict) -> None:
    job.api.users["other_user"] = PASSWORD
    assert job.run("--force").code == 0
    job.write_config(scheduler={k: v.format(port=job.api.port) for k, v in change.items()})
    assert job.run("--force").code == 0
    assert job.api.count("login") == 2


def test_older_access_token_shape_is_accepted(job: Job) -> None:
    job.api.login_shape = "access_token"
    assert job.run("--force").code == 0
    assert job.run("--force").code == 0
    assert job.api.count("login") == 1 and job.api.notify_processed == 2


# --- step 5: notify, with one re-login on 401/403 --------------------------------------------------

@pytest.mark.parametrize("refusal", [
    {"detail": "Could not validate credentials"},  # 401: token expired early or key rotated
])
def test_a_refused_token_is_dropped_and_the_notify_resent_once(job: Job, refusal: dict) -> None:
    from standin import status
    job.run("--force")
    job.api.inject("notify", status(401, refusal, headers={"WWW-Authenticate": "Bearer"}))
    result = job.run("--force")
    assert result.code == 0, result.err
    assert job.api.count("login") == 2 and job.api.count("notify") == 3 and job.api.notify_processed == 2
    assert json.loads(job.token_file.read_text())["token"] == job.api.issued_tokens[-1]


def test_a_refused_token_that_cannot_be_removed_still_gets_one_relogin(job: Job) -> None:
    from standin import status
    job.cache.mkdir(mode=0o700)
    job.token_file.mkdir()  # unremovable as a file: drop() fails with IsADirectoryError
    job.api.inject("notify", status(401, {"detail": "Could not validate credentials"}))
    result = job.run("--force")
    assert result.code == 0, result.err
    assert job.api.count("login") == 2 and job.api.notify_processed == 1
    assert "cannot remove token cache" in result.err


def test_a_notify_without_bearer_gets_403_from_the_stand_in() -> None:
    """Guards the stand-in's fidelity: the tests above rely on it refusing bad credentials."""
    import requests

    from standin import StandIn
    with StandIn() as api:
        assert requests.post(api.base_url + "/notifications/notify-absence", json={"threshold": 30}).status_code == 403


# --- step 6: the summary, and what cron sees ------------------------------------------------------

def test_summary_is_logged_and_push_failures_are_one_warning_line(job: Job) -> None:
    result = job.run("--force")
    assert result.code == 0
    assert "Notification summary: 2 employees processed, 1 sent, 1 failed" in result.log
    warnings = [line for line in result.err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "EMP-0002 (code 500)" in warnings[0] and "EMP-0001" not in warnings[0]
    assert "Notification summary" not in result.err  # cron mails only problems


def test_a_clean_run_prints_nothing_for_cron_to_mail(job: Job) -> None:
    for employee in job.api.employees:
        employee["push_ok"] = True
    result = job.run("--force")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert "2 employees processed, 2 sent, 0 failed" in result.log


def test_nobody_over_the_threshold(job: Job) -> None:
    job.api.employees.clear()
    result = job.run("--force")
    assert result.code == 0 and "0 employees processed, 0 sent, 0 failed" in result.log


def test_unreachable_push_service_shows_code_0(job: Job) -> None:
    job.api.employees[1]["push_ok"] = None
    result = job.run("--force")
    assert result.code == 0 and "EMP-0002 (code 0)" in result.err


def test_request_curl_and_device_tokens_never_reach_any_output(job: Job) -> None:
    result = job.run("--force", "-v")
    for secret in job.api.device_tokens + job.api.issued_tokens + [PASSWORD, "request_curl", "curl -X"]:
        assert secret not in result.all


# --- logging -----------------------------------------------------------------------------------------

def test_verbose_and_quiet_move_the_console_level(job: Job) -> None:
    verbose = job.run("--force", "-v")
    assert "Notification summary" in verbose.err
    quiet = job.run("--force", "-q")
    assert quiet.code == 0 and quiet.err == ""  # the push-failure warning is hidden too
    assert quiet.log.count("Notification summary") == 2  # the file keeps its level


def test_on_a_terminal_the_console_gets_the_configured_level(job: Job) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(job.command("--force"), cwd=job.cwd, env=cron_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=30)
    os.close(leader)
    assert proc.returncode == 0
    assert b"Notification summary" in b"".join(chunks)


def test_empty_log_file_means_stderr_only(job: Job) -> None:
    job.write_config(logging={"file": ""})
    result = job.run("--force", "-v")
    assert result.code == 0 and "Notification summary" in result.err
    assert not job.log_file.exists()


def test_the_log_file_is_appended_not_truncated(job: Job) -> None:
    job.run("--force")
    job.run("--force")
    assert job.log_file.read_text().count("Notification summary") == 2


# --- exit codes not covered by the fault tests ---------------------------------------------------

@pytest.mark.parametrize("args", [["--bogus"], ["--json"], ["-v", "-q"], ["--check", "--status"],
                                  ["--config"]])
def test_usage_errors_exit_64(job: Job, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=cron_env(), capture_output=True,
                          text=True, timeout=30, cwd=job.cwd)
    assert proc.returncode == 64 and "usage:" in proc.stderr and "Traceback" not in proc.stderr
    assert job.api.requests == []


def test_log_file_that_cannot_be_created_exits_73(job: Job) -> None:
    (job.dir / "blocker").write_text("a file, not a folder")
    job.write_config(logging={"file": "blocker/notify_once.log"})
    result = job.run("--force")
    assert result.code == 73 and "log file" in result.err and result.err.count("\n") == 1
    assert job.api.requests == []


def run_with_a_bug(job: Job):
    """The real main() in a subprocess, with one function replaced by one that raises: a simulated bug."""
    driver = ("import sys; sys.path.insert(0, sys.argv[1]); import era_beacon_notify.cli as cli, era_beacon_notify.job as job\n"
              "def boom(*a, **k): raise KeyError('simulated bug')\n"
              "job.summarize = boom\n"
              "sys.exit(cli.main(sys.argv[2:]))\n")
    proc = subprocess.run([sys.executable, "-c", driver, str(ROOT), "--config", str(job.config), "--force"],
                          cwd=job.cwd, env=cron_env(), capture_output=True, text=True, timeout=30)
    return job.result(proc.returncode, proc.stdout, proc.stderr)


def test_a_bug_exits_70_with_the_traceback_in_the_log_file_only(job: Job) -> None:
    result = run_with_a_bug(job)
    assert result.code == 70
    assert result.err.count("\n") == 1 and "internal error" in result.err and "Traceback" not in result.err
    assert "Traceback" in result.log and "simulated bug" in result.log
    assert json.loads(job.last_run.read_text())["exit_code"] == 70  # the record still says so


def test_a_bug_without_a_log_file_puts_its_traceback_on_stderr(job: Job) -> None:
    """With `file =` (a container), stderr is the only log: the traceback must not be lost."""
    job.write_config(logging={"file": ""})
    result = run_with_a_bug(job)
    assert result.code == 70
    assert "Traceback" in result.err and "simulated bug" in result.err


@pytest.mark.parametrize("args", [["--force"], ["--dry-run", "--force"]])
def test_a_python_without_the_requirements_is_a_clear_deployment_error(job: Job, args: list[str]) -> None:
    """`python -S` has no site-packages: as if cron ran /usr/bin/python3 instead of the venv's."""
    proc = subprocess.run([sys.executable, "-S", str(SCRIPT), "--config", str(job.config), *args],
                          cwd=job.cwd, env=cron_env(), capture_output=True, text=True, timeout=30)
    result = job.result(proc.returncode, proc.stdout, proc.stderr)
    assert result.code == 78, result.err
    assert result.err.count("\n") == 1 and "cannot import filelock" in result.err and ".venv/bin/python" in result.err
    assert "Traceback" not in result.all and job.api.requests == []


def imported_modules(job: Job, *args: str, env: dict | None = None) -> set[str]:
    report = job.dir / "modules.txt"
    job.run(*args, env={**(env or {}), "ERA_TEST_MODULES_REPORT": str(report)})
    return set(report.read_text().split())


def test_a_run_skipped_outside_hours_imports_no_network_or_lock_library(job: Job) -> None:
    """What keeps a skipped run cheap (bench/results.md): a later eager import would undo it."""
    modules = imported_modules(job, env={"ERA_TEST_NOW": str(jakarta("2026-12-05 10:00"))})
    assert "era_beacon_notify.cli" in modules  # the report works
    heavy = {"requests", "urllib3", "filelock", "logging.handlers", "dataclasses", "json", "era_beacon_notify.job"}
    assert modules & heavy == set()


def test_a_lock_busy_run_never_imports_requests(job: Job) -> None:
    from filelock import FileLock
    job.cache.mkdir()
    with FileLock(str(job.cache / "notify_once.lock")):
        modules = imported_modules(job, "--force")
    assert "filelock" in modules
    assert modules & {"requests", "urllib3", "era_beacon_notify.api", "era_beacon_notify.job", "logging.handlers"} == set()


def test_logrotate_moving_the_log_mid_run_loses_no_line(job: Job) -> None:
    """A run that holds the lock logs through WatchedFileHandler: after logrotate renames the file
    (no copytruncate), the rest of the run goes to the new file, not the rotated one."""
    import threading

    from conftest import finish, wait_for
    from standin import hold
    release = threading.Event()
    job.api.inject("notify", hold(release))
    running = job.popen("--force", "-v")
    try:
        assert wait_for(lambda: job.api.count("notify") == 1)
        job.log_file.rename(job.dir / "notify_once.log.1")  # what logrotate does
    finally:
        release.set()
    assert finish(running, job).code == 0
    assert "logged in" in (job.dir / "notify_once.log.1").read_text()
    assert "Notification summary" in job.log_file.read_text()
