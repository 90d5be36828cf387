"""`make demo` must keep working: it is the first command of the README."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, SEEN_OUTPUT


def test_demo_shows_a_cold_run_then_a_warm_run() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "demo.py")], capture_output=True, text=True,
                          timeout=120, cwd="/")
    SEEN_OUTPUT.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("--- exit code 0") == 3
    assert "no cached token: logging in" in proc.stderr and "using cached token" in proc.stderr
    assert "demo: OK: one login, two notifications" in proc.stdout
    assert "Era2025!" not in proc.stdout + proc.stderr
