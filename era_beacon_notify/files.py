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
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
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


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temp files of killed runs. Only call while holding the run lock."""
    removed = []
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        if _unlink_quietly(tmp):
            removed.append(tmp)
    return removed


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False


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
