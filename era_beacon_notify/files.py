"""Private files written atomically, and read without following symlinks.

A reader sees the old file or the new one, never a partial one: the bytes go to a temporary file
in the same folder, are fsynced, and `os.replace` swaps them in. `os.replace` renames over a
symlink rather than writing through it, so a planted `token.json -> /etc/passwd` is replaced, not
followed. A run killed mid-write leaves only a `.*.tmp` file, which the next run removes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    # O_EXCL with a random name: in a shared folder (a metrics collector's) nobody can plant the temp
    # file, or a hard link to another file, for this write to truncate.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exactly `mode`, whatever the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_nofollow(path: Path, limit: int = 1 << 20) -> bytes:
    """The file's bytes; OSError (ELOOP) when it is a symlink, ValueError when over `limit`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def remove_stale_temp_files(folder: Path, name: str = "*") -> None:
    """Remove the temp files that killed runs left for `name` in `folder`. Only call while holding
    the run lock: no other run can be writing one then."""
    for tmp in folder.glob(f".{name}.*{TMP_SUFFIX}"):
        _unlink_quietly(tmp)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
