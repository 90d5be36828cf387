"""The deployment files agree with the program: schedule, paths, variable names, time zone, limits.

Each file is parsed (crontab.example, deploy/systemd, deploy/logrotate, deploy/kubernetes,
deploy/docker) and compared with what the program does: the business hours come from the shipped
config.ini through era_beacon_notify's own parse_config and skip_reason, so a schedule that fires
outside them, or misses a slot inside them, fails here. Nothing is run but `systemd-analyze
calendar` where it exists. No secret is printed: assertions never show config text or passwords.
"""

from __future__ import annotations

import configparser
import json
import logging.handlers
import re
import shlex
import shutil
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path, PurePosixPath

import pytest
import yaml  # PyYAML: requirements-dev.txt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from era_beacon_notify import cli, logs  # noqa: E402
from era_beacon_notify.config import ENV_PASSWORD, ENV_USERNAME, Config, ConfigError, parse_config  # noqa: E402
from era_beacon_notify.schedule import skip_reason  # noqa: E402

INSTALL = PurePosixPath("/opt/era-beacon-notify")  # where crontab/systemd/logrotate install it
CRONTAB = ROOT / "crontab.example"
SERVICE = ROOT / "deploy/systemd/era-beacon-notify.service"
TIMER = ROOT / "deploy/systemd/era-beacon-notify.timer"
LOGROTATE = ROOT / "deploy/logrotate/era-beacon-notify"
K8S = ROOT / "deploy/kubernetes/cronjob.yaml"
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
INTERVAL_SECONDS = 30 * 60  # the schedule's period: run limits must stay below it
PLACEHOLDER_ENV = {ENV_USERNAME: "env-user", ENV_PASSWORD: "env-secret"}
MONDAY = date(2026, 11, 30)

Slot = tuple[int, int, int]  # (weekday 0=Monday, hour, minute) in the business time zone


# --- the program's side -----------------------------------------------------------------------------

def shipped_config() -> Config:
    """The shipped config.ini, as the program reads it once installed under INSTALL."""
    text = (ROOT / "config.ini").read_text(encoding="utf-8-sig")
    return parse_config(text, Path(INSTALL / "config.ini"), PLACEHOLDER_ENV)


def shipped_password() -> str:
    """auth_password of the shipped config.ini ("" when the file leaves it to the environment)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string((ROOT / "config.ini").read_text(encoding="utf-8-sig"))
    return parser.get("scheduler", "auth_password", fallback="").strip()


def business_slots(cfg: Config) -> set[Slot]:
    """Every half hour of a week at which the program's own check lets a scheduled run send."""
    slots = set()
    for day in range(7):
        for minutes in range(0, 24 * 60, 30):
            now = datetime.combine(MONDAY + timedelta(days=day), time(*divmod(minutes, 60)), tzinfo=cfg.tz)
            if skip_reason(now, cfg.weekday_start_hour, cfg.weekday_end_hour, frozenset()) is None:
                slots.add((now.weekday(), now.hour, now.minute))
    return slots


# --- parsers ------------------------------------------------------------------------------------------

def cron_values(field: str, low: int, high: int) -> set[int]:
    """One cron field (`*`, `*/30`, `9-17`, `1,3`, `2-10/2`) as the set of values it matches."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(x) for x in span.split("-"))
        else:
            first = int(span)
            last = high if step else first
        values.update(range(first, last + 1, int(step) if step else 1))
    return values


def cron_slots(schedule: str) -> set[Slot]:
    """The (weekday, hour, minute) a 5-field schedule fires at; day-of-month and month must be `*`."""
    minute, hour, dom, month, dow = schedule.split()
    assert (dom, month) == ("*", "*"), f"schedule {schedule!r} restricts day of month or month"
    days = {(d % 7 + 6) % 7 for d in cron_values(dow, 0, 7)}  # cron 0/7 = Sunday; Python 0 = Monday
    return {(d, h, m) for d in days for h in cron_values(hour, 0, 23) for m in cron_values(minute, 0, 59)}


_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_JOB_LINE = re.compile(r"^(\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s+(/\S.*)$")


def crontab() -> dict:
    """Environment lines, active job lines and commented-out job lines of crontab.example."""
    env, jobs, commented = {}, [], []
    for raw in CRONTAB.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            job = _JOB_LINE.match(line.lstrip("#").strip())
            if job:
                commented.append((job[1], shlex.split(job[2])))
            continue
        if (assign := _ENV_LINE.match(line)) and not _JOB_LINE.match(line):
            env[assign[1]] = assign[2].strip().strip("\"'")
            continue
        job = _JOB_LINE.match(line)
        assert job, f"crontab.example: not a comment, variable or job line: {line!r}"
        jobs.append((job[1], shlex.split(job[2])))
    return {"env": env, "jobs": jobs, "commented": commented}


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None and _, f"{path.name}: bad line {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"expected one {key}=, found {values}"
    return values[0]


def seconds(span: str) -> int:
    """A systemd time span such as 1620, 1620s, 27min or 27min 30s, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), f"unreadable span {span!r}"
    return sum(int(n) * units[u] for n, u in parts)


def logrotate() -> tuple[list[str], list[list[str]]]:
    """The file paths of the one logrotate block and its directives (split into words)."""
    text = "\n".join(line for line in LOGROTATE.read_text().splitlines() if not line.strip().startswith("#"))
    head, brace, rest = text.partition("{")
    body, close, tail = rest.partition("}")
    assert brace and close and not tail.strip(), "logrotate snippet: expected exactly one { ... } block"
    return head.split(), [line.split() for line in body.splitlines() if line.strip()]


def k8s() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert sorted(kinds) == ["ConfigMap", "CronJob", "Secret"], kinds
    return {d["kind"]: d for d in docs}


def pod_spec(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(cronjob: dict) -> dict:
    containers = pod_spec(cronjob)["containers"]
    assert len(containers) == 1
    return containers[0]


def configmap_config(docs: dict[str, dict], env: dict[str, str]) -> Config:
    """The ConfigMap's config.ini, read the way the pod reads it (at the --config path)."""
    path = PurePosixPath(config_arg(container(docs["CronJob"])))
    text = docs["ConfigMap"]["data"][path.name]
    return parse_config(text, Path(path), env)


def config_arg(c: dict) -> str:
    args = c.get("args", [])
    assert "--config" in args, f"container args lack --config: {args}"
    return args[args.index("--config") + 1]


def dockerfile() -> list[tuple[str, str]]:
    """Instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or (not raw.strip() and not current):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, args = current.strip().partition(" ")
        lines.append((keyword.upper(), " ".join(args.split())))
        current = ""
    return lines


def timer_calendar() -> tuple[set[Slot], str]:
    """OnCalendar= of the timer as slots in its zone, and the zone."""
    spec = one(unit(TIMER)["Timer"], "OnCalendar")
    m = re.fullmatch(r"(\S+) \*-\*-\* (\S+):(\S+):(\S+) (\S+)", spec)
    assert m, f"OnCalendar {spec!r} is not of the form 'DAYS *-*-* HOURS:MINUTES:SECONDS ZONE'"
    days_text, hours_text, minutes_text, seconds_text, zone = m.groups()
    assert seconds_text == "00"
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

    def values(text: str, parse) -> set[int]:
        out: set[int] = set()
        for part in text.split(","):
            first, _, last = part.partition("..")
            out.update(range(parse(first), parse(last or first) + 1))
        return out

    days = values(days_text, names.index)
    return {(d, h, mi) for d in days for h in values(hours_text, int) for mi in values(minutes_text, int)}, zone


# --- crontab.example ------------------------------------------------------------------------------

def test_crontab_has_exactly_one_job_and_it_fires_in_business_hours() -> None:
    tab, cfg = crontab(), shipped_config()
    assert len(tab["jobs"]) == 1, f"expected one active job line, found {len(tab['jobs'])}"
    schedule, _ = tab["jobs"][0]
    assert schedule.split() == "*/30 9-17 * * 1-5".split()
    assert cfg.weekday_start_hour == 9 and cfg.weekday_end_hour == 18
    assert cron_slots(schedule) == business_slots(cfg)  # 9-17 fires cover start 9 up to end 18


def test_crontab_command_uses_absolute_paths_and_the_config_flag() -> None:
    _, command = crontab()["jobs"][0]
    python, script, *args = command
    assert python == str(INSTALL / ".venv/bin/python")
    assert script == str(INSTALL / "notify_once.py") and script.endswith("notify_once.py")
    assert args == ["--config", str(INSTALL / "config.ini")]
    assert cli.parse_args(args).config == Path(INSTALL / "config.ini")  # the program accepts them


def test_crontab_sets_mailto_and_cron_tz_to_the_configs_zone() -> None:
    env = crontab()["env"]
    assert "MAILTO" in env
    assert env.get("CRON_TZ") == shipped_config().timezone == "Asia/Jakarta"


def test_crontabs_utc_alternative_is_commented_out_and_covers_the_same_jakarta_slots() -> None:
    tab, cfg = crontab(), shipped_config()
    alternatives = [(s, c) for s, c in tab["commented"] if s.split()[1] != "9-17"]
    assert len(alternatives) == 1, "expected one commented-out UTC line"
    schedule, command = alternatives[0]
    assert schedule.split() == "*/30 2-10 * * 1-5".split()
    assert command == tab["jobs"][0][1]
    in_zone = set()
    for day, hour, minute in cron_slots(schedule):
        utc = datetime.combine(MONDAY + timedelta(days=day), time(hour, minute), tzinfo=timezone.utc)
        local = utc.astimezone(cfg.tz)
        in_zone.add((local.weekday(), local.hour, local.minute))
    assert in_zone == business_slots(cfg)


def test_crontab_explains_time_zones_and_the_old_daemon() -> None:
    text = CRONTAB.read_text()
    for phrase in ("CRON_TZ", "cronie", "UTC", "server", "timezone", "APScheduler", "twice"):
        assert phrase in text, f"crontab.example does not mention {phrase}"


# --- systemd --------------------------------------------------------------------------------------

def test_timer_fires_in_the_configs_zone_at_the_business_slots_and_never_late() -> None:
    cfg = shipped_config()
    slots, zone = timer_calendar()
    assert one(unit(TIMER)["Timer"], "OnCalendar") == "Mon..Fri *-*-* 09..17:00,30:00 Asia/Jakarta"
    assert zone == cfg.timezone
    assert slots == business_slots(cfg)
    assert one(unit(TIMER)["Timer"], "Persistent") == "false"
    assert unit(TIMER)["Timer"].get("Unit", [SERVICE.name]) == [SERVICE.name]
    assert TIMER.stem == SERVICE.stem
    assert one(unit(TIMER)["Install"], "WantedBy") == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_itself_reads_the_timer_as_the_business_slots() -> None:
    cfg = shipped_config()
    spec = one(unit(TIMER)["Timer"], "OnCalendar")
    slots = business_slots(cfg)
    proc = subprocess.run(["systemd-analyze", "calendar", f"--iterations={len(slots)}", spec],
                          capture_output=True, text=True, timeout=10, env={"TZ": cfg.timezone, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert f"Normalized form: {spec}" in proc.stdout
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", proc.stdout)
    seen = {(d.weekday(), d.hour, d.minute) for d in (datetime.fromisoformat(e) for e in elapses)}
    assert len(elapses) == len(slots) and seen == slots  # one week of slots, each in business hours


def test_service_runs_the_crontabs_command_once_as_the_service_user() -> None:
    service = unit(SERVICE)["Service"]
    assert one(service, "Type") == "oneshot"
    assert shlex.split(one(service, "ExecStart")) == crontab()["jobs"][0][1]
    assert one(service, "WorkingDirectory") == str(INSTALL)
    assert one(service, "User") == "era-beacon"
    assert one(service, "EnvironmentFile").startswith("-/")  # optional: credentials may be in config.ini
    assert "SuccessExitStatus" not in service  # every non-zero sysexits code is a real failure
    assert "Install" not in unit(SERVICE)  # started by the timer only


def test_service_timeout_is_above_max_run_seconds_and_below_the_interval() -> None:
    limit = seconds(one(unit(SERVICE)["Service"], "TimeoutStartSec"))
    assert shipped_config().max_run_seconds < limit < INTERVAL_SECONDS


def test_service_hardening_leaves_writable_exactly_the_cache_and_the_log() -> None:
    service, cfg = unit(SERVICE)["Service"], shipped_config()
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "PrivateTmp") == "yes"
    writable = {p.lstrip("-") for value in service["ReadWritePaths"] for p in value.split()}
    assert writable == {str(cfg.cache_dir), str(cfg.log_file)}


# --- logrotate --------------------------------------------------------------------------------------

def test_logrotate_rotates_the_log_file_the_shipped_config_writes() -> None:
    paths, directives = logrotate()
    assert paths == [str(shipped_config().log_file)] == [str(INSTALL / "notify_once.log")]
    words = {d[0] for d in directives}
    assert {"compress", "delaycompress", "missingok", "notifempty"} <= words
    assert words & {"daily", "weekly"}
    rotate = [d for d in directives if d[0] == "rotate"]
    assert len(rotate) == 1 and int(rotate[0][1]) >= 1
    user = one(unit(SERVICE)["Service"], "User")
    assert ["create", "0600", user, user] in directives


def test_logrotate_needs_no_copytruncate_because_the_program_reopens_the_file(tmp_path: Path) -> None:
    _, directives = logrotate()
    words = {d[0] for d in directives}
    assert not words & {"copytruncate", "postrotate", "prerotate"}
    # WatchedFileHandler is the reason: check the program still logs through it.
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        logs.setup_logging("INFO", "%(message)s", tmp_path / "notify_once.log")
        logs.watch_rotation()  # what every run that holds the lock does
        assert any(isinstance(h, logging.handlers.WatchedFileHandler) for h in root.handlers)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)


# --- Kubernetes -----------------------------------------------------------------------------------

def test_cronjob_schedule_and_zone_match_the_crontab_timer_and_config() -> None:
    docs, cfg = k8s(), shipped_config()
    spec = docs["CronJob"]["spec"]
    assert spec["schedule"] == crontab()["jobs"][0][0]
    assert spec["timeZone"] == cfg.timezone == timer_calendar()[1]
    assert cron_slots(spec["schedule"]) == business_slots(configmap_config(docs, PLACEHOLDER_ENV))


def test_cronjob_never_overlaps_retries_or_starts_late() -> None:
    spec = k8s()["CronJob"]["spec"]
    job = spec["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec.get("startingDeadlineSeconds"), int) and 0 < spec["startingDeadlineSeconds"] < INTERVAL_SECONDS
    assert job["backoffLimit"] == 0
    assert pod_spec(k8s()["CronJob"])["restartPolicy"] == "Never"


def test_cronjob_active_deadline_is_above_max_run_seconds_and_below_the_interval() -> None:
    docs = k8s()
    deadline = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert configmap_config(docs, PLACEHOLDER_ENV).max_run_seconds < deadline < INTERVAL_SECONDS


def test_cronjob_credentials_come_from_the_secret_through_the_programs_variables() -> None:
    docs = k8s()
    env = container(docs["CronJob"])["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {ENV_USERNAME, ENV_PASSWORD}
    secret = docs["Secret"]
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    values = list(secret["stringData"].values())
    assert all("CHANGE-ME" in v for v in values)
    password = shipped_password()
    leaked = bool(password) and password in K8S.read_text()
    assert not leaked, "a real password is in deploy/kubernetes/cronjob.yaml"


def test_configmap_config_is_valid_and_holds_no_credentials() -> None:
    docs = k8s()
    cfg = configmap_config(docs, PLACEHOLDER_ENV)
    assert (cfg.username, cfg.password) == (PLACEHOLDER_ENV[ENV_USERNAME], PLACEHOLDER_ENV[ENV_PASSWORD])
    with pytest.raises(ConfigError, match="auth_username"):
        configmap_config(docs, {})  # without the Secret's variables it cannot run: nothing in the file
    shipped = shipped_config()
    same = ("threshold_minutes", "api_base_url", "weekday_start_hour", "weekday_end_hour", "timezone")
    assert {k: getattr(cfg, k) for k in same} == {k: getattr(shipped, k) for k in same}


def test_configmap_paths_match_the_pods_mounts() -> None:
    docs = k8s()
    c, spec = container(docs["CronJob"]), pod_spec(docs["CronJob"])
    cfg = configmap_config(docs, PLACEHOLDER_ENV)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_path = PurePosixPath(config_arg(c))
    config_mounts = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == docs["ConfigMap"]["metadata"]["name"]]
    assert len(config_mounts) == 1 and mounts[config_mounts[0]]["mountPath"] == str(config_path.parent)
    cache_mounts = [m for m in mounts.values() if m["mountPath"] == str(cfg.cache_dir)]
    assert len(cache_mounts) == 1 and not cache_mounts[0].get("readOnly", False)
    assert cfg.log_file is None  # stderr only: kubectl logs
    assert "-v" in c["args"]  # without a terminal or log file, -v is what shows the INFO summary


def test_cronjob_runs_as_the_images_user_and_documents_the_approximately_once_caveat() -> None:
    docs = k8s()
    user = [a for k, a in dockerfile() if k == "USER"][-1].split(":")[0]
    assert pod_spec(docs["CronJob"])["securityContext"]["runAsUser"] == int(user)
    text = K8S.read_text().lower()
    for phrase in ('"approximately once"', "persistentvolumeclaim", "min_gap_minutes", "emptydir", "not idempotent"):
        assert phrase in text, f"cronjob.yaml does not mention {phrase}"


# --- Docker -----------------------------------------------------------------------------------------

def test_dockerfile_builds_a_slim_image_with_time_zone_data() -> None:
    steps = dockerfile()
    base = steps[0]
    assert base[0] == "FROM" and re.fullmatch(r"python:3\.(\d+)-slim", base[1])
    assert int(re.fullmatch(r"python:3\.(\d+)-slim", base[1])[1]) >= 10
    installs = [a for k, a in steps if k == "RUN" and "apt-get install" in a]
    assert installs and all("--no-install-recommends" in a for a in installs)
    assert any(re.search(r"\btzdata\b", a) for a in installs)


def test_dockerfile_copies_requirements_first_then_the_program_and_runs_it() -> None:
    steps = dockerfile()
    copies = {a.split()[0].rstrip("/"): (i, a.split()[-1].rstrip("/")) for i, (k, a) in enumerate(steps) if k == "COPY"}
    assert set(copies) == {"requirements.txt", "notify_once.py", "era_beacon_notify"}
    assert all((ROOT / src).exists() for src in copies)  # the build context is the repository root
    pip = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a]
    assert len(pip) == 1 and "--no-cache-dir" in steps[pip[0]][1] and "requirements.txt" in steps[pip[0]][1]
    assert copies["requirements.txt"][0] < pip[0] < copies["notify_once.py"][0]
    entry = [a for k, a in steps if k == "ENTRYPOINT"]
    assert len(entry) == 1
    command = json.loads(entry[0])
    script = PurePosixPath(copies["notify_once.py"][1])
    assert command == ["python", str(script)] and script.name == "notify_once.py"
    assert PurePosixPath(copies["era_beacon_notify"][1]) == script.parent / "era_beacon_notify"  # imported beside it
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
