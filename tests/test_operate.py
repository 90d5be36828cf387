"""Operating it like a batch job: run record, repeat guard, --status, --dry-run, --check, holidays,
monitoring pings and the Prometheus textfile. All through the real script."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime

import pytest
from filelock import FileLock

from conftest import BUSINESS_TIME, PASSWORD, Job, finish, jakarta, wait_for
from standin import hang, hold, status

SCHEDULED = {"ERA_TEST_NOW": str(BUSINESS_TIME)}


def record(job: Job) -> dict:
    return json.loads(job.last_run.read_text())


# --- run record --------------------------------------------------------------------------------------

def test_a_sent_run_leaves_a_small_complete_record(job: Job) -> None:
    assert job.run("--force").code == 0
    rec = record(job)
    assert set(rec) == {"started_at", "finished_at", "duration_seconds", "outcome", "exit_code", "message",
                        "counts", "last_success_at", "last_notify_at"}
    assert (rec["outcome"], rec["exit_code"]) == ("sent", 0)
    assert rec["counts"] == {"employees": 2, "sent": 1, "failed": 1}
    started, finished = (datetime.fromisoformat(rec[k]) for k in ("started_at", "finished_at"))
    assert started.utcoffset() is not None and started <= finished  # ISO 8601 with offset
    assert rec["last_success_at"] == rec["last_notify_at"] == rec["finished_at"]
    assert job.last_run.stat().st_size < 1024


def test_a_failed_run_records_its_code_and_keeps_the_last_success(job: Job) -> None:
    job.run("--force")
    success = record(job)["last_success_at"]
    job.api.inject("notify", status(500, {"detail": "boom"}))
    assert job.run("--force").code == 69
    rec = record(job)
    assert (rec["outcome"], rec["exit_code"], rec["last_success_at"]) == ("failed", 69, success)
    assert "boom" in rec["message"]


@pytest.mark.parametrize("args, env", [
    ([], {"ERA_TEST_NOW": str(jakarta("2026-12-02 20:00"))}),  # skipped outside hours
    (["--check"], {}),
    (["--dry-run", "--force"], {}),
    (["--status"], {}),
])
def test_runs_that_do_not_send_leave_no_record(job: Job, args: list[str], env: dict) -> None:
    job.run(*args, env=env)
    assert not job.last_run.exists()


def test_a_lock_busy_run_leaves_the_record_alone(job: Job) -> None:
    job.run("--force")
    before = job.last_run.read_bytes()
    with FileLock(str(job.cache / "notify_once.lock")):
        assert job.run("--force").code == 75
    assert job.last_run.read_bytes() == before


# --- repeat guard ------------------------------------------------------------------------------------

def test_a_second_scheduled_run_within_min_gap_skips(job: Job) -> None:
    assert job.run(env=SCHEDULED).code == 0
    again = job.run(env={"ERA_TEST_NOW": str(BUSINESS_TIME + 120)})
    assert again.code == 0 and "min_gap_minutes" in again.log
    assert job.api.notify_processed == 1
    later = job.run(env={"ERA_TEST_NOW": str(BUSINESS_TIME + 11 * 60)})
    assert later.code == 0 and job.api.notify_processed == 2


def test_force_bypasses_the_repeat_guard_and_zero_disables_it(job: Job) -> None:
    job.run(env=SCHEDULED)
    job.run("--force", env=SCHEDULED)
    assert job.api.notify_processed == 2
    job.write_config(scheduler={"min_gap_minutes": "0"})
    job.run(env=SCHEDULED)
    assert job.api.notify_processed == 3


@pytest.mark.parametrize("fault, code", [
    (hang, 69),                                                # read timeout: outcome unknown
    (lambda: status(200, {"success": True, "message": "Processed"}), 76),  # accepted, answer unusable
    (lambda: status(502, "<html>Bad Gateway</html>", content_type="text/html"), 69),  # may have pushed partway
])
def test_a_run_that_may_have_notified_arms_the_repeat_guard(job: Job, fault, code: int) -> None:
    job.write_config(scheduler={"read_timeout_seconds": "2", "max_run_seconds": "4"})
    job.api.inject("notify", fault())
    assert job.run(env=SCHEDULED).code == code
    again = job.run(env={"ERA_TEST_NOW": str(BUSINESS_TIME + 60)})
    assert again.code == 0 and "min_gap_minutes" in again.log
    assert job.api.count("notify") == 1  # no second push to employees' phones
    status_out = job.run("--status").out
    assert "last notify:" in status_out and "last success: never" in status_out


def test_a_run_turned_away_before_the_server_acted_does_not_arm_the_repeat_guard(job: Job) -> None:
    job.api.inject("notify", status(422, {"detail": [{"loc": ["body", "threshold"], "msg": "Field required"}]}))
    assert job.run(env=SCHEDULED).code == 76
    assert job.run(env={"ERA_TEST_NOW": str(BUSINESS_TIME + 60)}).code == 0
    assert job.api.notify_processed == 1


# --- --status ------------------------------------------------------------------------------------------

def test_status_without_a_record_exits_1(job: Job) -> None:
    result = job.run("--status")
    assert result.code == 1 and "none recorded" in result.out
    assert job.api.requests == []


def test_status_after_success_exits_0_and_never_shows_the_token(job: Job) -> None:
    job.run("--force")
    human = job.run("--status")
    assert human.code == 0, human.err
    assert "sent, exit 0" in human.out and "lock:         free" in human.out
    assert re.search(r"token:\s+1[78]\d\ds left", human.out)
    machine = job.run("--status", "--json")
    doc = json.loads(machine.out)
    assert doc["ok"] is True and doc["last_run"]["exit_code"] == 0 and doc["lock_held_by_pid"] is None
    assert 1700 < doc["token_seconds_left"] <= 1800
    for secret in job.api.issued_tokens + [PASSWORD]:
        assert secret not in human.out + machine.out
    assert job.api.count("login") == 1 and job.api.count("notify") == 1  # status made no request


def test_status_after_failure_exits_1(job: Job) -> None:
    job.api.inject("login", status(401, {"detail": "Invalid username or password"}))
    assert job.run("--force").code == 77
    result = job.run("--status", "--json")
    assert result.code == 1 and json.loads(result.out)["last_run"]["exit_code"] == 77


def test_status_sees_a_running_job_without_disturbing_it(job: Job) -> None:
    job.run("--force")
    release = threading.Event()
    job.api.inject("notify", hold(release))
    running = job.popen("--force")
    try:
        assert wait_for(lambda: job.api.count("notify") == 2)
        doc = json.loads(job.run("--status", "--json").out)
        assert doc["lock_held_by_pid"] == running.pid
    finally:
        release.set()
    assert finish(running, job).code == 0  # the status probe never took the lock from it
    assert json.loads(job.run("--status", "--json").out)["lock_held_by_pid"] is None


# --- --dry-run ---------------------------------------------------------------------------------------

def test_dry_run_logs_in_but_never_notifies(job: Job) -> None:
    result = job.run("--dry-run", "--force")
    assert result.code == 0, result.err
    assert job.api.count("login") == 1 and job.api.count("notify") == 0
    assert f"POST {job.api.base_url}/notifications/notify-absence" in result.out
    assert "Authorization: Bearer <token>" in result.out and '{"threshold": 30}' in result.out
    assert job.api.issued_tokens[0] not in result.out
    assert job.token_file.exists()  # the token is cached for the real run


def test_dry_run_respects_business_hours_without_force(job: Job) -> None:
    result = job.run("--dry-run", env={"ERA_TEST_NOW": str(jakarta("2026-12-05 10:00"))})
    assert result.code == 0 and job.api.requests == [] and result.out == ""


# --- --check -------------------------------------------------------------------------------------------

def test_check_prints_what_it_resolved_without_network_or_lock(job: Job) -> None:
    result = job.run("--check", env={"ERA_TEST_NOW": str(jakarta("2026-12-04 19:00"))})
    assert result.code == 0, result.err
    assert f"cache_dir:              {job.cache}" in result.out
    assert f"log file:               {job.log_file}" in result.out
    assert "timezone:               Asia/Jakarta" in result.out
    assert "next business window:   2026-12-07T09:00:00+07:00" in result.out
    assert PASSWORD not in result.out + result.err
    assert job.api.requests == [] and not job.cache.exists()


def test_check_fails_78_on_bad_config_or_unusable_paths(job: Job) -> None:
    job.write_config(scheduler={"timezone": "Nowhere/City"})
    assert job.run("--check").code == 78
    (job.dir / "a-file").write_text("")
    job.write_config(scheduler={"cache_dir": "a-file/cache"})
    result = job.run("--check")
    assert result.code == 78 and "cache_dir" in result.err


# --- holidays ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, file_text", [
    ("2026-12-02", None),
    ("2026-12-25, 2026-12-02", None),
    ("holidays.txt", "# Jakarta office\n2026-12-25\n2026-12-02  # a company day off\n"),
])
def test_a_skip_date_is_skipped_like_outside_hours(job: Job, value: str, file_text: str | None) -> None:
    if file_text:
        (job.dir / "holidays.txt").write_text(file_text)
    job.write_config(scheduler={"skip_dates": value})
    result = job.run(env=SCHEDULED)  # Wednesday 2026-12-02 10:00
    assert result.code == 0 and job.api.requests == [] and "skip_dates" in result.log
    assert job.run("--force", env=SCHEDULED).code == 0 and job.api.notify_processed == 1


def test_a_missing_holiday_file_is_a_config_error(job: Job) -> None:
    job.write_config(scheduler={"skip_dates": "no-such-file.txt"})
    result = job.run(env=SCHEDULED)
    assert result.code == 78 and "no-such-file.txt" in result.err


# --- monitoring ----------------------------------------------------------------------------------------

def pings(job: Job) -> list[tuple[str, str]]:
    return [(r.path, r.body.decode()) for r in job.api.requests if r.path.startswith("/ping")]


def with_monitoring(job: Job, ping: str | None = None, metrics: str | None = None) -> None:
    lines = ["[monitoring]"]
    if ping:
        lines.append(f"ping_url = {ping}")
    if metrics:
        lines.append(f"metrics_file = {metrics}")
    job.write_config(extra="\n".join(lines) + "\n")


def test_pings_start_then_success_with_the_summary(job: Job) -> None:
    with_monitoring(job, ping=f"{job.api.url}/ping/abc")
    assert job.run("--force").code == 0
    sent = pings(job)
    assert [p for p, _ in sent] == ["/ping/abc/start", "/ping/abc"]
    assert "Notification summary: 2 employees processed" in sent[1][1]
    order = [r.route for r in job.api.requests]
    assert order.index("other") < order.index("notify")  # start ping before the work


def test_a_failed_run_pings_its_exit_code(job: Job) -> None:
    with_monitoring(job, ping=f"{job.api.url}/ping/abc")
    job.api.inject("notify", status(422, {"detail": [{"loc": ["body", "threshold"], "msg": "Field required"}]}))
    assert job.run("--force").code == 76
    assert [p for p, _ in pings(job)] == ["/ping/abc/start", "/ping/abc/76"]


def test_a_broken_monitoring_endpoint_never_fails_the_run(job: Job) -> None:
    with_monitoring(job, ping="http://127.0.0.1:9/ping")  # nothing listens on port 9
    result = job.run("--force")
    assert result.code == 0 and job.api.notify_processed == 1
    assert "monitoring ping" in result.err


def test_lock_busy_and_skipped_runs_do_not_ping(job: Job) -> None:
    with_monitoring(job, ping=f"{job.api.url}/ping/abc")
    job.run(env={"ERA_TEST_NOW": str(jakarta("2026-12-02 20:00"))})
    job.cache.mkdir()
    with FileLock(str(job.cache / "notify_once.lock")):
        assert job.run("--force").code == 75
    assert pings(job) == []


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name] = float(value)
    return values


def test_metrics_textfile(job: Job) -> None:
    with_monitoring(job, metrics="metrics/era_beacon_notify.prom")
    (job.dir / "metrics").mkdir()
    prom = job.dir / "metrics" / "era_beacon_notify.prom"
    assert job.run("--force").code == 0
    text = prom.read_text()
    values = parse_metrics(text)
    names = ["last_run_timestamp_seconds", "last_success_timestamp_seconds", "last_exit_code",
             "run_duration_seconds", "notifications_sent", "notifications_failed", "employees_total"]
    for name in names:
        assert f"# HELP era_beacon_notify_{name} " in text and f"# TYPE era_beacon_notify_{name} gauge" in text
    assert values["era_beacon_notify_last_exit_code"] == 0
    assert (values["era_beacon_notify_notifications_sent"], values["era_beacon_notify_notifications_failed"],
            values["era_beacon_notify_employees_total"]) == (1, 1, 2)
    success = values["era_beacon_notify_last_success_timestamp_seconds"]
    assert success > 1.7e9
    assert prom.stat().st_mode & 0o044  # node_exporter runs as another user and must read it

    job.api.inject("notify", status(503, {"detail": "down"}), status(503, {"detail": "down"}),
                   status(503, {"detail": "down"}))
    assert job.run("--force").code == 69
    values = parse_metrics(prom.read_text())
    assert values["era_beacon_notify_last_exit_code"] == 69
    assert values["era_beacon_notify_last_success_timestamp_seconds"] == success  # kept across failures
    assert [p.name for p in prom.parent.iterdir()] == ["era_beacon_notify.prom"]  # no temp files left


@pytest.mark.parametrize("log_file, problem", [
    ("no-such-folder/notify_once.log", "its folder does not exist"),
    ("a-folder", "is a folder"),
])
def test_check_fails_78_on_a_log_file_every_run_would_fail_to_open(job: Job, log_file: str, problem: str) -> None:
    (job.dir / "a-folder").mkdir()
    job.write_config(logging={"file": log_file})
    result = job.run("--check")
    assert result.code == 78 and problem in result.err and "config OK" not in result.out
    assert job.run("--force").code == 73  # what --check predicted


def test_check_fails_78_on_a_python_without_the_requirements(job: Job) -> None:
    import subprocess
    import sys

    from conftest import SCRIPT, cron_env
    proc = subprocess.run([sys.executable, "-S", str(SCRIPT), "--config", str(job.config), "--check"],
                          cwd=job.cwd, env=cron_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78
    assert "cannot import filelock" in proc.stderr and "cannot import requests" in proc.stderr


def test_secrets_in_a_server_message_are_masked_in_the_record_status_and_ping(job: Job) -> None:
    with_monitoring(job, ping=f"{job.api.url}/ping/abc")
    job.api.inject("notify", status(500, {"detail": "upstream said: Authorization: Bearer abc.def.ghi"}))
    assert job.run("--force").code == 69
    outputs = [job.last_run.read_text(), job.run("--status").out, pings(job)[-1][1]]
    for text in outputs:
        assert "abc.def.ghi" not in text and "[REDACTED]" in text


def test_a_trickling_monitoring_endpoint_cannot_hold_the_lock(job: Job) -> None:
    from standin import normal, trickle
    with_monitoring(job, ping=f"{job.api.url}/ping/abc")
    job.api.inject("other", normal(), trickle(0.5))  # the start ping answers, the final one trickles
    result = job.run("--force")
    assert result.code == 0 and job.api.notify_processed == 1
    assert result.seconds < 9  # 5 s for the ping at most, not the trickle's forever
    assert "took over 5s" in result.err


@pytest.mark.parametrize("damage", [{"duration_seconds": "1.0"}, {"exit_code": None}, {"extra": 1}])
def test_status_reads_a_damaged_record_as_none(job: Job, damage: dict) -> None:
    job.run("--force")
    job.last_run.write_text(json.dumps({**record(job), **damage}))
    result = job.run("--status")
    assert result.code == 1 and "none recorded" in result.out and "Traceback" not in result.err


def test_check_into_a_closed_pipe_ends_quietly(job: Job) -> None:
    import subprocess
    import sys

    from conftest import SCRIPT, cron_env
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--config", str(job.config), "--check"], cwd=job.cwd,
                            env=cron_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141 and "Traceback" not in err and "BrokenPipe" not in err
