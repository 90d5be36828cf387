"""`make demo`: notify_once.py twice against the stand-in API on a free loopback port.

The first run logs in and sends; the second reuses the cached token and sends. Everything lives in
.demo/ (recreated each time); the shipped config.ini, which points at production, is never read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
CONFIG = """\
[scheduler]
threshold_minutes = 30
api_base_url = http://127.0.0.1:{port}/v1
auth_username = era_user
auth_password = Era2025!
weekday_start_hour = 9
weekday_end_hour = 18
timezone = Asia/Jakarta

[logging]
level = INFO
format = %(asctime)s - %(name)s - %(levelname)s - %(message)s
file = notify_once.log
"""


def start_standin() -> tuple[subprocess.Popen, int]:
    port_file = WORK / "standin.port"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "standin.py"), "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL)
    for _ in range(200):
        if port_file.exists():
            return proc, int(port_file.read_text())
        if proc.poll() is not None:
            sys.exit("demo: the stand-in API did not start")
        time.sleep(0.05)
    proc.terminate()
    sys.exit("demo: the stand-in API did not report its port")


def run(title: str, config: Path, *args: str) -> int:
    print(f"\n=== {title}: notify_once.py --config {config.relative_to(ROOT)} {' '.join(args)}", flush=True)
    code = subprocess.call([sys.executable, str(ROOT / "notify_once.py"), "--config", str(config), *args],
                           cwd=WORK / "elsewhere")
    print(f"--- exit code {code}", flush=True)
    return code


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "elsewhere").mkdir(parents=True)  # run from another folder, as cron does
    standin, port = start_standin()
    try:
        config = WORK / "config.ini"
        config.write_text(CONFIG.format(port=port))
        config.chmod(0o600)
        print(f"demo: stand-in Era Beacon API on http://127.0.0.1:{port} (stand-in lines show what it received;\n"
              "      it fails EMP-0002's push on purpose, to show the WARNING a real push failure gives)")
        codes = [run("run 1 (cold: no cached token, logs in)", config, "--force", "-v"),
                 run("run 2 (warm: reuses the cached token)", config, "--force", "-v"),
                 run("status", config, "--status")]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as resp:
            stats = json.load(resp)
    finally:
        standin.terminate()
        standin.wait(10)
    print(f"\ndemo: the stand-in saw {stats['login']} login(s) and {stats['notify']} notify call(s)")
    print(f"demo: files left in {WORK.relative_to(ROOT)}/: "
          + ", ".join(sorted(str(p.relative_to(WORK)) for p in WORK.rglob("*") if p.is_file())))
    ok = codes == [0, 0, 0] and stats["login"] == 1 and stats["notify"] == 2
    print("demo: OK: one login, two notifications" if ok else "demo: UNEXPECTED result, see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
