"""Exit codes (sysexits.h), so cron mail and monitoring can tell kinds of failure apart."""

EXIT_OK = 0
STATUS_NOT_OK = 1  # --status: the last run failed, or there is none
EX_USAGE = 64  # bad command line
EX_UNAVAILABLE = 69  # the API is unreachable, failed, or the deadline passed
EX_SOFTWARE = 70  # a bug: traceback in the log file
EX_CANTCREAT = 73  # the cache, the lock or the log file cannot be created
EX_TEMPFAIL = 75  # another run holds the lock
EX_PROTOCOL = 76  # an answer the API contract does not allow
EX_NOPERM = 77  # credentials or token refused
EX_CONFIG = 78  # bad configuration
# A stop signal exits 128 + its number: SIGTERM 143, SIGINT 130, SIGHUP 129 (runtime.Terminated).


class Stop(Exception):
    """End the run early with this exit code; the text is the one-line reason."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def missing_dependency(exc: ImportError) -> Stop:
    """A run started with a Python that lacks requirements.txt: a deployment error, not a bug."""
    return Stop(EX_CONFIG, f"cannot import {exc.name or exc}: run notify_once.py with the virtualenv's python "
                "(.venv/bin/python notify_once.py), where requirements.txt is installed")
