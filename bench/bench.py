#!/usr/bin/env python3
"""Benchmark: the cost of one notify_once.py run against the floor of its stack (issue 5).

    .venv/bin/python bench/bench.py             15 interleaved rounds, writes bench/results.md
    .venv/bin/python bench/bench.py --runs 30   more rounds
    .venv/bin/python bench/bench.py --smoke     2 rounds, checks that it works, writes nothing

Everything runs against the stand-in API (tests/standin.py, standalone mode) on 127.0.0.1, started
once as a subprocess for the whole session and stopped at the end, even on failure. All files (job
folders, token caches, locks, logs, bytecode) live in one temp folder, removed at the end (--keep
keeps it). Each round runs every variant once, in an order rotated by one each round, so drift
(CPU frequency, page cache, noisy neighbours) spreads over all variants alike. Each child is
measured on its own: wall time around spawn..reap, and os.wait4's rusage of that child only
(CPU = user + sys, peak RSS = ru_maxrss), never RUSAGE_CHILDREN (a maximum over all children).

Every measured run is also checked: exit code, and the HTTP requests the stand-in counted for it
(reset before each run): warm 1 (notify), cold 2 (login + notify), lock-busy and outside-hours 0.
A wrong count or exit code stops the benchmark with exit 1: a fast run that does the wrong thing
is not a result. Missed targets are reported as FAIL but exit 0: this is a measurement.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import fcntl
import http.client
import json
import marshal
import os
import platform
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCRIPT = ROOT / "notify_once.py"
STANDIN = ROOT / "tests" / "standin.py"
BASELINE = BENCH / "baseline.py"
RESULTS = BENCH / "results.md"
PY = sys.executable  # .venv/bin/python under `make bench`: the program and the baselines share it

USERNAME, PASSWORD = "era_user", "Era2025!"  # the stand-in's built-in user; never printed
ZONE = "Asia/Jakarta"
ZONE_OFFSET = dt.timezone(dt.timedelta(hours=7))  # Jakarta has no DST
BENCH_TOKEN_LIFETIME = 24 * 3600  # the warm job's cached token must outlive the session
CHILD_TIMEOUT = 60.0

TARGETS = (  # (variant, metric, baseline, limit)
    ("warm", "wall", "base-warm", 1.05),
    ("warm", "rss", "base-warm", 1.05),
    ("lock-busy", "wall", "base-warm", 0.60),
    ("outside-hours", "wall", "base-warm", 0.35),
)


# --- the stand-in ---------------------------------------------------------------------------------

class StandInProcess:
    """tests/standin.py in standalone mode; GET /_stats and POST /_reset over http.client (no proxies)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port_file = folder / "standin.port"
        self.log = open(folder / "standin.log", "wb")  # one line per request; never tokens
        self.proc = subprocess.Popen(
            [PY, str(STANDIN), "--host", "127.0.0.1", "--port-file", str(self.port_file),
             "--token-lifetime", str(BENCH_TOKEN_LIFETIME)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 15
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the stand-in did not start (exit {self.proc.poll()})")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def _call(self, method: str, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return json.loads(resp.read())
        finally:
            conn.close()

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/_stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# --- the variants ---------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    what: str
    cmd: list[str]
    cwd: Path
    expect_exit: int
    expect_requests: dict[str, int]  # stand-in route -> count; routes not named must be 0
    baseline: str | None = None  # the variant its ratios are taken against
    prepare: Callable[[], None] = lambda: None
    extra_env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Path], str | None] = lambda out: None  # problem text, or None
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (wall s, cpu s, maxrss KiB)

    def median(self, metric: str) -> float:
        index = {"wall": 0, "cpu": 1, "rss": 2}[metric]
        return statistics.median(s[index] for s in self.samples)

    def quartiles(self, metric: str) -> tuple[float, float]:
        index = {"wall": 0, "cpu": 1, "rss": 2}[metric]
        values = sorted(s[index] for s in self.samples)
        if len(values) < 2:
            return values[0], values[0]
        q = statistics.quantiles(values, n=4)
        return q[0], q[2]

    @property
    def requests_per_run(self) -> int:
        return sum(self.expect_requests.values())


def child_env(folder: Path) -> dict[str, str]:
    """A cron-like environment, the same for every child. Bytecode goes to the temp folder, so the
    program runs from .pyc like a deployed job does, and nothing is written under the repository."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(folder / "home"), "LANG": "C.UTF-8", "TZ": "UTC",
            "PYTHONPYCACHEPREFIX": str(folder / "pycache")}


def write_job(folder: Path, base_url: str, **scheduler: str) -> Path:
    """A deployment like the shipped config.ini (INFO log file), pointed at the stand-in."""
    (folder / "elsewhere").mkdir(parents=True, exist_ok=True)  # cron's cwd: not the config's folder
    s = {"threshold_minutes": "30", "api_base_url": base_url, "auth_username": USERNAME, "auth_password": PASSWORD,
         "weekday_start_hour": "9", "weekday_end_hour": "18", "timezone": ZONE, "max_run_seconds": "30",
         "connect_timeout_seconds": "2", "read_timeout_seconds": "10", **scheduler}
    text = "[scheduler]\n" + "".join(f"{k} = {v}\n" for k, v in s.items())
    text += ("\n[logging]\nlevel = INFO\nformat = %(asctime)s - %(name)s - %(levelname)s - %(message)s\n"
             "file = notify_once.log\n")
    config = folder / "config.ini"
    config.write_text(text)
    config.chmod(0o600)
    return config


def hold_lock(path: Path) -> int:
    """Take the job's lock the way filelock does (flock on cache/notify_once.lock) and keep it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


class LogWatch:
    """What one run added to a job's notify_once.log."""

    def __init__(self, job: Path) -> None:
        self.log = job / "notify_once.log"
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0

    def expect(self, text: str) -> Callable[[Path], str | None]:
        def check(out: Path) -> str | None:
            with open(self.log, "rb") if self.log.exists() else open(os.devnull, "rb") as fh:
                fh.seek(self.offset)
                added = fh.read().decode(errors="replace")
            return None if text in added else f"the run did not log {text!r}"
        return check


def build_variants(tmp: Path, api: StandInProcess) -> tuple[list[Variant], list[int]]:
    """The job folders, their configs and the commands; returns the variants and the fds of held locks."""
    base = api.base_url
    warm = tmp / "job-warm"
    cold = tmp / "job-cold"
    busy = tmp / "job-busy"
    outside = tmp / "job-outside"
    floor = tmp / "floor"  # the baselines' own lock files, same kind of path
    for folder in (warm, cold, busy):
        write_job(folder, base)
    today = dt.datetime.now(ZONE_OFFSET).date()  # yesterday..tomorrow: robust across midnight anywhere
    write_job(outside, base, skip_dates=", ".join(str(today + dt.timedelta(days=d)) for d in (-1, 0, 1)))
    (floor / "cache").mkdir(parents=True, exist_ok=True)
    token_file = warm / "cache" / "token.json"
    header_file = floor / "auth.header"  # curl reads the header from a file: no token in argv
    held = [hold_lock(busy / "cache" / "notify_once.lock")]

    def program(job: Path, *args: str) -> list[str]:
        return [PY, str(SCRIPT), "--config", str(job / "config.ini"), *args]

    def expect_stderr(text: str) -> Callable[[Path], str | None]:
        return lambda out: None if text in (out / "err").read_text() else f"stderr lacks {text!r}"

    watch = {job: LogWatch(job) for job in (warm, cold, outside)}

    def drop_token() -> None:
        (cold / "cache" / "token.json").unlink(missing_ok=True)
        watch[cold].mark()

    variants = [
        Variant("warm", "notify_once.py --force, cached token", program(warm, "--force"), warm / "elsewhere",
                0, {"notify": 1}, "base-warm", prepare=watch[warm].mark, check=watch[warm].expect("Notification summary")),
        Variant("base-warm", "baseline: requests + filelock, lock, 1 POST",
                [PY, str(BASELINE), "warm", base, str(floor / "cache" / "notify_once.lock"), str(token_file)],
                floor, 0, {"notify": 1}),
        Variant("bare", "requests only: 1 POST, no lock, no filelock",
                [PY, str(BASELINE), "bare", base, str(token_file)], floor, 0, {"notify": 1}, "base-warm"),
        Variant("cold", "notify_once.py --force, no cached token", program(cold, "--force"), cold / "elsewhere",
                0, {"login": 1, "notify": 1}, "base-cold", prepare=drop_token,
                check=watch[cold].expect("Notification summary")),
        Variant("base-cold", "baseline: requests + filelock, lock, login + notify",
                [PY, str(BASELINE), "cold", base, str(floor / "cache" / "notify_once.lock")],
                floor, 0, {"login": 1, "notify": 1},
                extra_env={"ERA_BEACON_USERNAME": USERNAME, "ERA_BEACON_PASSWORD": PASSWORD}),
        Variant("lock-busy", "notify_once.py --force, lock held by another process", program(busy, "--force"),
                busy / "elsewhere", 75, {}, "base-warm", check=expect_stderr("another run holds")),
        Variant("outside-hours", "notify_once.py (no --force), today is a skip date", program(outside),
                outside / "elsewhere", 0, {}, "base-warm", prepare=watch[outside].mark,
                check=watch[outside].expect("skipped:")),
        Variant("python", "interpreter start only: python -c pass", [PY, "-c", "pass"], floor, 0, {}, "base-warm"),
    ]
    curl, flock = shutil.which("curl"), shutil.which("flock")
    if curl and flock:
        variants.insert(3, Variant(
            "curl", "flock -n + curl: 1 POST (the physical floor)",
            [flock, "-n", "-E", "75", str(floor / "cache" / "curl.lock"), curl, "-sS", "--noproxy", "*", "-o",
             "/dev/null", "-w", "%{http_code}", "--connect-timeout", "2", "--max-time", "10", "-X", "POST",
             "-H", "Content-Type: application/json", "-H", f"@{header_file}", "-d", '{"threshold":30}',
             f"{base}/notifications/notify-absence"],
            floor, 0, {"notify": 1}, "base-warm",
            check=lambda out: None if (out / "out").read_text() == "200" else "curl did not get HTTP 200"))
    return variants, held


def write_curl_header(tmp: Path) -> None:
    token = json.loads((tmp / "job-warm" / "cache" / "token.json").read_text())["token"]
    header = tmp / "floor" / "auth.header"
    header.write_text(f"Authorization: Bearer {token}\n")
    header.chmod(0o600)


# --- one measured child ---------------------------------------------------------------------------

class Spawner:
    """bench/spawn.py: a small `python -I -S` process that spawns each child and reaps it with os.wait4.

    Not this process: a child's ru_maxrss starts at the peak RSS of whoever spawned it (see spawn.py).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PY, "-I", "-S", str(BENCH / "spawn.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=None, bufsize=0)  # unbuffered: select() sees every line

    def _line(self, timeout: float, pid: int | None = None) -> list[str]:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready and pid is not None:  # a hung child: kill it, then collect its (failed) result
            os.kill(pid, signal.SIGKILL)
            ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line:
            raise BenchError(f"the spawner stopped answering (exit {self.proc.poll()})")
        return line.split()

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], out: Path) -> tuple[int, float, float, int]:
        """(exit code, wall s, user+sys s of that child, its peak RSS in KiB)."""
        marshal.dump((argv, str(cwd), env, str(out / "out"), str(out / "err")), self.proc.stdin)
        self.proc.stdin.flush()
        pid = int(self._line(15)[1])
        _, code, wall, cpu, rss = self._line(CHILD_TIMEOUT, pid)
        return int(code), float(wall), float(cpu), int(rss)

    def floor(self) -> int:
        """The spawner's own peak RSS (KiB): a child's ru_maxrss can never read below it."""
        marshal.dump("floor", self.proc.stdin)
        self.proc.stdin.flush()
        return int(self._line(15)[1])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()


class BenchError(Exception):
    pass


def run_once(variant: Variant, api: StandInProcess, spawner: Spawner, env: dict[str, str], out: Path,
             record: bool) -> dict[str, int]:
    variant.prepare()
    api.reset()
    code, wall, cpu, rss = spawner.run(variant.cmd, variant.cwd, {**env, **variant.extra_env}, out)
    seen = {route: n for route, n in api.stats().items() if n}
    problems = []
    if code != variant.expect_exit:
        problems.append(f"exit {code}, expected {variant.expect_exit}")
    if seen != variant.expect_requests:
        problems.append(f"the stand-in saw {seen or 'no request'}, expected {variant.expect_requests or 'none'}")
    problem = variant.check(out)
    if problem:
        problems.append(problem)
    if problems:
        err = (out / "err").read_text(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{variant.name}: " + "; ".join(problems) + (f" (stderr: {' | '.join(err)})" if err else ""))
    if record:
        variant.samples.append((wall, cpu, rss))
    return seen


# --- import costs (python -X importtime) ----------------------------------------------------------

@dataclass
class ImportRow:
    name: str
    depth: int
    self_us: float
    cum_us: float


def importtime(cmd: list[str], env: dict[str, str], cwd: Path, reps: int, expect_exit: int) -> list[ImportRow]:
    """Median self/cumulative import time per module over `reps` runs, in first-run order."""
    runs: list[dict[str, tuple[int, int, int]]] = []
    order: list[str] = []
    for _ in range(reps):
        proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        if proc.returncode != expect_exit:
            raise BenchError(f"importtime run {cmd[1:]} exited {proc.returncode}, expected {expect_exit}")
        rows = {}
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
            if m:
                rows[m[4]] = (int(m[1]), int(m[2]), len(m[3]) // 2)
        runs.append(rows)
        order = order or list(rows)
    return [ImportRow(name, runs[0][name][2], statistics.median(r[name][0] for r in runs if name in r),
                      statistics.median(r[name][1] for r in runs if name in r)) for name in order]


def group_of(name: str) -> str:
    top = name.split(".")[0]
    if top == "era_beacon_notify":
        return "era_beacon_notify (own code)"
    if top == "filelock":
        return "filelock"
    if top in ("requests", "urllib3", "idna", "charset_normalizer", "certifi", "chardet"):
        return "requests stack"
    if top in ("site", "encodings", "_sitebuiltins", "sitecustomize", "_distutils_hack", "codecs", "io", "abc",
               "stat", "genericpath", "posixpath", "os", "_collections_abc", "zipimport", "_io", "marshal",
               "posix", "_frozen_importlib_external", "time", "_codecs", "_signal", "_abc", "_stat"):
        return "interpreter start (site)"
    return "other stdlib"


CANDIDATES = ("logging.handlers", "dataclasses", "typing", "json", "zoneinfo", "configparser", "pathlib",
              "argparse", "shutil", "locale", "signal", "ipaddress", "base64", "datetime", "urllib.parse")


def parents(rows: list[ImportRow]) -> dict[str, str | None]:
    """Who imported each module first: importtime lists a module's imports just before it, one level deeper."""
    out = {}
    for i, row in enumerate(rows):
        out[row.name] = next((r.name for r in rows[i + 1:] if r.depth == row.depth - 1), None) if row.depth else None
    return out


def roots(rows: list[ImportRow]) -> list[str]:
    """The modules the program itself imports (at the top of its modules, or lazily at run time)."""
    who = parents(rows)
    own_or_none = lambda name: name is None or name.startswith("era_beacon_notify")  # noqa: E731
    skip = ("era_beacon_notify (own code)", "interpreter start (site)")
    return [r.name for r in rows if group_of(r.name) not in skip and own_or_none(who[r.name])
            and r.name not in ("__future__", "encodings.utf_8_sig")]


def leave_out(rows: list[ImportRow], under: list[str], exclude: set[str], spawner: Spawner, env: dict[str, str],
              tmp: Path, runs: int) -> dict:
    """Median (wall s, CPU s, peak RSS KiB) of importing `under` + the path's own imports, and the
    savings when one of them is left out; interleaved like the main rounds."""
    mods = [m for m in roots(rows) if m not in exclude]
    sets = {"(all)": mods, **{f"-{m}": [x for x in mods if x != m] for m in CANDIDATES if m in mods}, "(none)": []}
    samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sets}
    keys = list(sets)
    for r in range(runs):
        k = r % len(keys)
        for key in keys[k:] + keys[:k]:
            names = under + sets[key]
            code = "import " + ", ".join(names) if names else "pass"
            exit_code, wall, cpu, rss = spawner.run([PY, "-c", code], tmp / "floor", env, tmp / "out")
            if exit_code != 0:
                raise BenchError(f"python -c {code!r} exited {exit_code}")
            samples[key].append((wall, cpu, rss))
    med = {k: tuple(statistics.median(s[i] for s in v) for i in range(3)) for k, v in samples.items()}
    who = parents(rows)
    cum = {r.name: r.cum_us for r in rows}
    return {"modules": mods, "under": under, "all": med["(all)"], "none": med["(none)"], "rows": [
        (m, cum.get(m, 0), *(med["(all)"][i] - med[f"-{m}"][i] for i in range(3)), who.get(m))
        for m in CANDIDATES if f"-{m}" in med]}


def import_findings(tmp: Path, variants: dict[str, Variant], env: dict[str, str], spawner: Spawner,
                    reps: int, runs: int) -> dict:
    out: dict = {}
    for name in ("outside-hours", "lock-busy", "warm", "base-warm"):
        v = variants[name]
        rows = importtime(v.cmd, env, v.cwd, reps, v.expect_exit)
        groups: dict[str, float] = {}
        for row in rows:
            groups[group_of(row.name)] = groups.get(group_of(row.name), 0) + row.self_us
        out[name] = {"rows": rows, "groups": groups, "total_us": sum(r.self_us for r in rows)}
    floor = tmp / "floor"
    for label, code in (("filelock alone", "import filelock"), ("requests alone", "import requests"),
                        ("requests, then filelock", "import requests; import filelock")):
        rows = importtime([PY, "-c", code], env, floor, reps, 0)
        fl = sum(r.self_us for r in rows if r.name.split(".")[0] == "filelock")
        out[label] = {"total_us": sum(r.self_us for r in rows), "filelock_us": fl}
    base_names = {r.name for r in out["base-warm"]["rows"]}
    out["warm-only"] = [r for r in out["warm"]["rows"] if r.name not in base_names]

    # What each import costs, measured without importtime's overhead: `python -c "import <the modules
    # the path imports itself>"` with and without each of them. For `warm`, on top of requests and
    # filelock, and only the modules base-warm does not import.
    floor_mods = ["requests", "filelock"]
    out["leave-out"] = leave_out(out["outside-hours"]["rows"], [], set(), spawner, env, tmp, runs)
    out["leave-out-warm"] = leave_out(out["warm"]["rows"], floor_mods, base_names, spawner, env, tmp, runs)
    return out


# --- logins per business day (the program's own pure decisions, a fake clock) -----------------------

def fake_jwt(exp: int) -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': 'bench', 'exp': exp})}.c2ln"


def simulate_day(lifetime: int, jitter: float, margin: int = 60, runs: int = 18, seed: int = 5) -> list[str]:
    """One business day of cron runs (every 30 min from 09:00) against token_cache's pure functions.

    `jitter`: each run starts up to that many seconds after its cron minute (cron's own delay plus
    interpreter start), and logs in 0.3 s later. The server signs exp = int(login time) + lifetime,
    as the real one (and the stand-in) do. Returns the clock times of the runs that logged in.
    """
    sys.path.insert(0, str(ROOT))
    sys.dont_write_bytecode = True  # no __pycache__ under the repository from the bench
    from era_beacon_notify import token_cache  # the program's own decisions, not a copy

    rng = random.Random(seed)
    url = "http://127.0.0.1/v1"
    day = dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZONE_OFFSET).timestamp()  # a Wednesday
    cached = None
    logins = []
    for i in range(runs):
        start = day + i * 1800 + (rng.uniform(0.0, jitter) if jitter else 0.0)
        if cached is None or not token_cache.is_fresh(cached, start, margin, url, USERNAME):
            login_at = start + (0.3 if jitter else 0.0)
            cached = token_cache.token_from_login({"token": fake_jwt(int(login_at) + lifetime)}, login_at, url, USERNAME)
            if not token_cache.worth_caching(cached):
                cached = None
            logins.append(dt.datetime.fromtimestamp(start, ZONE_OFFSET).strftime("%H:%M:%S"))
    return logins


def day_table() -> tuple[list[tuple[str, str, int, str]], str]:
    rows = []
    for lifetime in (1800, 3600):
        for label, jitter in (("exactly 30 min apart", 0.0), ("0-5 s start jitter", 5.0)):
            logins = simulate_day(lifetime, jitter)
            rows.append((f"{lifetime // 60} min", label, len(logins), ", ".join(t[:5] for t in logins)))
    explanation = (
        "A token lives `L` seconds from its login; a run uses it only while more than `refresh_margin_seconds` "
        "(60) are left. The next run comes 1800 s (± a few seconds of start jitter) after the login, when "
        "`L - 1800 ± jitter` seconds are left. With 30-minute tokens that is 0 ± jitter < 60: the token is "
        "always too old, so **every run logs in (18 of 18)** and the cache never saves a login on a cron "
        "schedule (API_CONTRACT.md says the same). With 60-minute tokens, the run after a login finds 1800 s "
        "left and reuses it, the one after that finds 0 ± jitter and logs in: **every other run logs in "
        "(9 of 18)**. Jitter of a few seconds changes nothing because it is far below the 60 s margin; a 30-minute "
        "cadence only starts saving logins when `L > 1800 + 60 + jitter`.")
    return rows, explanation


# --- report ---------------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    code = "import requests, filelock, urllib3; print(requests.__version__, filelock.__version__, urllib3.__version__)"
    got = subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout.split()
    versions = dict(zip(("requests", "filelock", "urllib3"), got)) if len(got) == 3 else {}
    curl = shutil.which("curl")
    curl_version = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout.split()[1] if curl else "-"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "kernel": platform.release(), **versions, "curl": curl_version,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "-"


def paired_ratio(v: Variant, base: Variant, metric: str) -> float:
    """Median over rounds of the per-round ratio (each pair ran minutes apart at most)."""
    index = {"wall": 0, "cpu": 1, "rss": 2}[metric]
    return statistics.median(a[index] / b[index] for a, b in zip(v.samples, base.samples))


FLOOR = [0]  # the spawner's peak RSS in KiB, set once measured


def results_table(variants: list[Variant]) -> list[str]:
    by = {v.name: v for v in variants}
    floor = FLOOR[0]
    lines = ["| run | what | HTTP req/run | exit | wall ms (median) | wall IQR ms | × base | CPU ms (median) | × base "
             "| peak RSS MiB (median) | × base |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in variants:
        base = by.get(v.baseline) if v.baseline else None
        q1, q3 = v.quartiles("wall")
        cells = [f"`{v.name}`", v.what, str(v.requests_per_run), str(v.expect_exit),
                 f"{v.median('wall') * 1e3:.1f}", f"{q1 * 1e3:.1f}–{q3 * 1e3:.1f}",
                 ratio(v.median("wall"), base.median("wall")) + f" `{base.name}`" if base else "1 (baseline)",
                 f"{v.median('cpu') * 1e3:.1f}", ratio(v.median("cpu"), base.median("cpu")) if base else "1",
                 f"{v.median('rss') / 1024:.1f}" + (" ≤ floor" if v.median("rss") <= floor else ""), ratio(v.median("rss"), base.median("rss")) if base else "1"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def target_lines(variants: list[Variant]) -> tuple[list[str], bool]:
    by = {v.name: v for v in variants}
    lines, all_ok = [], True
    for name, metric, base, limit in TARGETS:
        got = by[name].median(metric) / by[base].median(metric)
        paired = paired_ratio(by[name], by[base], metric)
        ok = got <= limit
        all_ok &= ok
        lines.append(f"- **{'PASS' if ok else 'FAIL'}** `{name}` {metric} {got:.3f}× `{base}` (target ≤ {limit:.2f}×; "
                     f"median of per-round ratios {paired:.3f}×)")
    return lines, all_ok


def ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def leave_out_table(lo: dict, base_wall: float) -> list[str]:
    lines = ["| module | first imported by | importtime cumulative | CPU saved if not imported | wall saved | "
             "× base-warm wall | peak RSS saved |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, cum, wall, cpu, rss, parent in sorted(lo["rows"], key=lambda r: r[3], reverse=True):
        lines.append(f"| `{name}` | `{parent or 'run time (lazy)'}` | {ms(cum)} | {cpu * 1e3:.1f} ms | "
                     f"{wall * 1e3:.1f} ms | {wall / base_wall:.3f} | {rss:.0f} KiB |")
    return lines


def import_lines(found: dict, base: Variant, outside: Variant) -> list[str]:
    base_wall, base_cpu = base.median("wall"), base.median("cpu")
    lines = ["Figures from `-X importtime` are medians over the importtime runs; importtime slows imports, so "
             "they run above the CPU figures measured without it.", "",
             "| path | all imports (importtime) | interpreter start (site) | other stdlib | era_beacon_notify "
             "| filelock | requests stack |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("outside-hours", "lock-busy", "warm", "base-warm"):
        g = found[name]["groups"]
        lines.append(f"| `{name}` | {ms(found[name]['total_us'])} | {ms(g.get('interpreter start (site)', 0))} "
                     f"| {ms(g.get('other stdlib', 0))} | {ms(g.get('era_beacon_notify (own code)', 0))} "
                     f"| {ms(g.get('filelock', 0))} | {ms(g.get('requests stack', 0))} |")
    fl_alone, rq_alone, both = found["filelock alone"], found["requests alone"], found["requests, then filelock"]
    lines.append("")
    lines.append(f"- filelock: `python -c 'import filelock'` imports {ms(fl_alone['total_us'])} in all, filelock's "
                 f"own modules {ms(fl_alone['filelock_us'])} (it pulls in typing, secrets/hashlib/hmac/random, "
                 f"platform, decimal); after `import requests` it adds {ms(both['total_us'] - rq_alone['total_us'])}. "
                 f"`import requests` alone: {ms(rq_alone['total_us'])}.")
    for name in ("outside-hours", "lock-busy"):
        rows = [r for r in found[name]["rows"] if r.depth <= 1 and group_of(r.name) != "interpreter start (site)"]
        rows.sort(key=lambda r: r.cum_us, reverse=True)
        top = ", ".join(f"`{r.name}` {ms(r.cum_us)}" for r in rows[:10])
        lines.append(f"- `{name}` top imports (cumulative, as first imported): {top}.")
    extra = sorted(found["warm-only"], key=lambda r: r.self_us, reverse=True)
    lines.append(f"- `warm` imports {len(extra)} modules that `base-warm` does not, {ms(sum(r.self_us for r in extra))} "
                 "(importtime, self): " + ", ".join(f"`{r.name}` {ms(r.self_us)}" for r in extra[:12]) + ".")
    lo = found["leave-out"]
    lines += ["", f"What each import costs the `outside-hours` path, without importtime: medians of "
              f"`python -c \"import <the {len(lo['modules'])} modules that path imports itself>\"` "
              f"({lo['all'][1] * 1e3:.1f} ms CPU; `pass`: {lo['none'][1] * 1e3:.1f} ms) minus the same without one "
              "of them (about 0: something else on the path imports it too).", ""] + leave_out_table(lo, base_wall)
    (_, all_cpu, _), (_, none_cpu, _) = lo["all"], lo["none"]
    budget = 0.35 * base_wall
    lines += ["", f"Budget of the `outside-hours` path: the interpreter start costs {none_cpu * 1e3:.1f} ms CPU "
              f"({none_cpu / base_cpu:.2f}× `base-warm`), the imports that path needs {(all_cpu - none_cpu) * 1e3:.1f} ms "
              f"({(all_cpu - none_cpu) / base_cpu:.2f}×), together {all_cpu / base_cpu:.2f}×; the whole run takes "
              f"{outside.median('cpu') * 1e3:.1f} ms ({outside.median('cpu') / base_cpu:.2f}×), so the rest (the "
              f"program's own modules, reading the config and the time zone, the log line) costs "
              f"{(outside.median('cpu') - all_cpu) * 1e3:.1f} ms. The 0.35× "
              f"target is {budget * 1e3:.1f} ms of wall time."]
    lw = found["leave-out-warm"]
    lines += ["", f"The same for `warm`, on top of `import requests, filelock` ({lw['none'][1] * 1e3:.1f} ms CPU, "
              f"{lw['none'][2] / 1024:.1f} MiB), for the {len(lw['modules'])} modules `warm` imports itself and "
              f"`base-warm` does not ({lw['all'][1] * 1e3:.1f} ms, {lw['all'][2] / 1024:.1f} MiB with them):", ""]
    lines += leave_out_table(lw, base_wall)
    extra = lw["all"][1] - lw["none"][1]
    lines += ["", f"Those modules are what the program is asked to use: argparse (the command line), configparser "
              f"(config.ini), zoneinfo (business hours in `timezone`), logging.handlers (`WatchedFileHandler`) and "
              f"signal (the `max_run_seconds` alarm, SIGTERM). On top of `requests` and `filelock` they cost "
              f"{extra * 1e3:.1f} ms CPU here ({extra / base_wall:.2f}× of `base-warm`'s wall time), against the "
              f"{0.05 * base_wall * 1e3:.1f} ms that the 1.05× warm target allows for everything the program adds. "
              "The rest of the warm gap is the program's own modules and work: validating config.ini, loading the "
              "time zone, the token cache, the log file and the run record (atomic, fsynced)."]
    return lines


def render(variants: list[Variant], runs: int, warmup: int, mach: dict[str, str], found: dict | None,
           day: tuple[list, str], targets: list[str], floor: int) -> str:
    order = " → ".join(v.name for v in variants)
    out = ["# Benchmark: one notify_once.py run against the floor of its stack", "",
           "Generated by `make bench` (`bench/bench.py`); do not edit by hand. Issue 5.", "",
           "## Machine", "",
           f"- CPU: {mach['cpu']}, {mach['cores']} cores; Linux {mach['kernel']}",
           f"- Python {mach['python']}; requests {mach.get('requests', '?')}, filelock {mach.get('filelock', '?')}, "
           f"urllib3 {mach.get('urllib3', '?')}; curl {mach['curl']}",
           f"- Date: {mach['date']}", "",
           "## Method", "",
           f"- One session: the stand-in API (`tests/standin.py`, standalone) on 127.0.0.1, started once; every "
           f"run is a fresh process. {runs} measured rounds after {warmup} unmeasured warm-up rounds; each round runs "
           f"every variant once, the order rotated by one per round ({order}).",
           "- Per child: wall time from spawn to reap; CPU (user+sys) and peak RSS from `os.wait4` on that "
           "child alone (for `flock … curl`, the larger of flock and curl). Figures are medians; ratios are "
           "median ÷ median against the baseline named in the row, measured in the same rounds.",
           "- Children are spawned by `bench/spawn.py`, a `python -I -S` process importing only built-ins, not by "
           "the bench itself: on Linux a child's ru_maxrss starts at its spawner's peak RSS (exec records the old "
           f"address space's high-water mark). The spawner's own peak is {floor / 1024:.1f} MiB; an RSS marked "
           "`≤ floor` cannot be told apart from it.",
           "- Cron-like environment (PATH=/usr/bin:/bin, TZ=UTC, LANG=C.UTF-8); bytecode cached in the temp "
           "folder (`PYTHONPYCACHEPREFIX`), as a deployed job runs from .pyc; job files, logs and locks in a "
           "temp folder on the same disk, removed afterwards.",
           "- Config as shipped (INFO log file, timezone Asia/Jakarta). `warm` reuses a token cached by one "
           "unmeasured real run (stand-in token lifetime 24 h); `cold` deletes `cache/token.json` first; "
           "`lock-busy` runs while the bench process holds `cache/notify_once.lock` (flock); "
           "`outside-hours` runs without `--force` on a config whose skip_dates hold today. Every measured "
           "run's exit code and the stand-in's request count (reset before each run) are asserted.",
           "- Baselines (`bench/baseline.py`): `base-warm` imports requests and filelock, takes a non-blocking "
           "`FileLock` on its own `cache/notify_once.lock`, reads the token from the same kind of cache file "
           "and makes the one POST; `base-cold` makes login + notify on one connection, as the program does; "
           "`bare` is requests only (no filelock, no lock), so `base-warm − bare` is the price of the lock "
           "library; `curl` is `flock -n` + curl with the same token and body.",
           "- The stand-in sets TCP_NODELAY, as uvicorn does: it writes an answer's headers and body in "
           "two sends, and without it the second answer on a kept-alive connection would wait ~40 ms for a "
           "delayed ACK, adding ~40 ms to every `cold` run that the real server never charges.", "",
           "## Results", ""]
    out += results_table(variants)
    out += ["", "Targets (ratios to the baseline measured in the same rounds):", ""] + targets
    by = {v.name: v for v in variants}
    price = (by["base-warm"].median("wall") - by["bare"].median("wall")) * 1e3
    out += ["", f"Price of the lock library: `base-warm` − `bare` = {price:.1f} ms wall "
            f"({ratio(by['base-warm'].median('wall'), by['bare'].median('wall'))}); `warm` ÷ `bare` = "
            f"{ratio(by['warm'].median('wall'), by['bare'].median('wall'))}."]
    if found:
        out += ["", "## Import time (`python -X importtime`)", ""] + import_lines(found, by["base-warm"], by["outside-hours"])
    rows, explanation = day
    out += ["", "## Logins per business day", "",
            "18 runs (every 30 min, 09:00–17:30) under a fake clock, decided by the program's own "
            "`token_cache.is_fresh` / `token_from_login` (refresh margin 60 s):", "",
            "| token lifetime | spacing | logins | runs that logged in |", "|---|---|---:|---|"]
    out += [f"| {a} | {b} | {c} of 18 | {d} |" for a, b, c, d in rows]
    out += ["", explanation, ""]
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="measured rounds (default 15; at least 10 for results)")
    ap.add_argument("--smoke", action="store_true", help="2 rounds, check that it works; write no results.md")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)
    runs = 2 if args.smoke else args.runs
    if runs < 1:
        ap.error("--runs must be at least 1")
    if not args.smoke and runs < 10:
        print(f"bench: note: {runs} rounds (< 10): results.md is written, but medians are rough", file=sys.stderr)

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="era-bench-"))
    env = child_env(tmp)
    (tmp / "home").mkdir()
    api = spawner = None
    held: list[int] = []
    try:
        api = StandInProcess(tmp, env)
        spawner = Spawner()
        variants, held = build_variants(tmp, api)
        by = {v.name: v for v in variants}
        scratch = tmp / "out"
        scratch.mkdir()
        # The warm job's token: one real, unmeasured run logs in and caches it.
        run_once(Variant("prepare", "", by["warm"].cmd, by["warm"].cwd, 0, {"login": 1, "notify": 1}),
                 api, spawner, env, scratch, record=False)
        write_curl_header(tmp)
        warmup = 0 if args.smoke else 2
        seen_counts: dict[str, dict[str, int]] = {}
        total = warmup + runs
        for r in range(total):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:
                seen_counts[v.name] = run_once(v, api, spawner, env, scratch, record=r >= warmup)
            if not args.smoke:
                print(f"bench: round {r + 1}/{total}{' (warm-up)' if r < warmup else ''}", file=sys.stderr)
        floor = FLOOR[0] = spawner.floor()
        found = import_findings(tmp, by, env, spawner, reps=1 if args.smoke else 7, runs=1 if args.smoke else runs)
        day = day_table()
        targets, _ = target_lines(variants)
        report = render(variants, runs, warmup, machine(), found, day, targets, floor)
        print(report)
        print("HTTP requests per run (stand-in): " + ", ".join(
            f"{name} {sum(seen_counts[name].values())}" for name in seen_counts))
        if not args.smoke:
            RESULTS.write_text(report)
            print(f"bench: wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
        return 0
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for fd in held:
            os.close(fd)
        if spawner is not None:
            spawner.close()
        if api is not None:
            api.stop()
        if args.keep:
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
