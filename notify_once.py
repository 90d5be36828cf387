#!/usr/bin/env python3
"""Send one Era Beacon absence notification, then exit. Run by cron every 30 minutes.

    */30 9-17 * * 1-5  /opt/era-beacon-notify/.venv/bin/python /opt/era-beacon-notify/notify_once.py

The code lives in the era_beacon_notify package beside this file. Start with cli.py (the run at a
glance: arguments, config, business hours, the lock), then job.py (the work under the lock: token,
one notification, the run record); the README's "Development" section lists the rest.
"""

import os
import sys

if sys.version_info < (3, 10):  # zoneinfo and the type syntax need 3.10: say so, not a traceback
    print(f"notify_once: needs Python 3.10 or newer, this is {sys.version.split()[0]}", file=sys.stderr)
    sys.exit(78)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cron runs from $HOME, not from here

from era_beacon_notify.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
