"""`make bench` must not rot: run bench/bench.py --smoke (2 rounds) and check what it reports.

The benchmark itself is not part of `make test`; this only proves that it runs end to end against
the stand-in, that every variant did what it should (the bench asserts exit codes and the stand-in's
request counts itself, and exits 1 otherwise), and that smoke mode leaves bench/results.md alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench.py"
RESULTS = ROOT / "bench" / "results.md"


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


@pytest.mark.timeout(60)
def test_bench_smoke_runs_and_counts_requests() -> None:
    before = _stamp(RESULTS)
    proc = subprocess.run([sys.executable, str(BENCH), "--smoke"], cwd=ROOT / "tests", stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for heading in ("## Machine", "## Method", "## Results", "| run | what | HTTP req/run | exit | wall ms (median)",
                    "## Import time", "## Logins per business day"):
        assert heading in out, heading
    counts = re.search(r"^HTTP requests per run \(stand-in\): (.*)$", out, re.M)
    assert counts, out[-2000:]
    seen = dict(item.rsplit(" ", 1) for item in counts.group(1).split(", "))
    assert seen["warm"] == "1" and seen["base-warm"] == "1" and seen["cold"] == "2" and seen["base-cold"] == "2"
    assert seen["lock-busy"] == "0" and seen["outside-hours"] == "0"
    for target in ("`warm` wall", "`warm` rss", "`lock-busy` wall", "`outside-hours` wall"):
        assert re.search(rf"\*\*(PASS|FAIL)\*\* {re.escape(target)}", out), target
    assert re.search(r"\| 30 min \| exactly 30 min apart \| 18 of 18 \|", out)
    assert re.search(r"\| 60 min \| exactly 30 min apart \| 9 of 18 \|", out)
    assert _stamp(RESULTS) == before, "smoke mode must not write bench/results.md"
    for secret in ("Era2025!", "eyJ", "devtok-", "Bearer ey"):
        assert secret not in out + proc.stderr, secret
