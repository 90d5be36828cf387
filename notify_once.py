#!/usr/bin/env python3
"""Send one Era Beacon absence notification, then exit. Run by cron every 30 minutes.

    */30 9-17 * * 1-5  /opt/era-beacon-notify/.venv/bin/python /opt/era-beacon-notify/notify_once.py

The code lives in the era_beacon_notify package beside this file, read in this order:
config.py (config.ini), schedule.py (business hours), token_cache.py (the bearer token),
api.py (the HTTP client and its retry policy), records.py (run record, metrics, pings),
cli.py (the run itself and its exit codes). README.md documents all of it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cron runs from $HOME, not from here

from era_beacon_notify.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
