"""Test-only hooks, loaded into notify_once.py subprocesses through PYTHONPATH by tests/conftest.py.

The program never reads these variables; production runs never have this folder on their path.
- ERA_TEST_NOW=<epoch>: the clock starts at that moment (business-hours tests on any weekday).
- ERA_TEST_TIME_OFFSET=<seconds>: the clock is shifted (a clock set back or forward).
- ERA_TEST_PAUSE_BEFORE_REPLACE=<file name>: before os.replace() onto that name, touch
  $ERA_TEST_PAUSE_MARKER and sleep, so a test can kill -9 the run mid-write.
- ERA_TEST_MODULES_REPORT=<path>: at exit, write the names of all imported modules there.
- ERA_TEST_SLEEP_SCALE=<factor>: time.sleep(s) sleeps s * factor (the retry backoff of 0 s then 2 s
  shrinks), for fault tests that count retries but do not measure their waits. Only time.sleep: the
  deadline (SIGALRM) and every socket timeout keep their real length.
"""

import os
import time

_now = os.environ.get("ERA_TEST_NOW")
_offset = os.environ.get("ERA_TEST_TIME_OFFSET")
if _now or _offset:
    _real_time = time.time
    _shift = float(_now) - _real_time() if _now else float(_offset)
    time.time = lambda: _real_time() + _shift

_pause = os.environ.get("ERA_TEST_PAUSE_BEFORE_REPLACE")
if _pause:
    _real_replace = os.replace

    def _paused_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _pause:
            with open(os.environ["ERA_TEST_PAUSE_MARKER"], "w"):
                pass
            time.sleep(60)
        return _real_replace(src, dst, *args, **kwargs)

    os.replace = _paused_replace


_scale = os.environ.get("ERA_TEST_SLEEP_SCALE")
if _scale:
    _real_sleep = time.sleep
    time.sleep = lambda seconds: _real_sleep(seconds * float(_scale))

_modules_report = os.environ.get("ERA_TEST_MODULES_REPORT")
if _modules_report:  # at exit, list every module the run imported (tests of the lazy imports)
    import atexit
    import sys

    atexit.register(lambda: open(_modules_report, "w").write("\n".join(sorted(sys.modules))))
