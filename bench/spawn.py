"""The bench's measuring process: spawns each measured child and reaps it with os.wait4.

Why a separate, small process: on Linux a child's ru_maxrss starts at the peak RSS of the process
that spawned it (exec records the old address space's high-water mark, and vfork/posix_spawn share
the parent's, fork copies it). Spawned from the bench itself (~25 MiB), `python -c pass` would report
~25 MiB. This process runs as `python -I -S` and imports only built-in modules (os, sys, marshal,
time), so its own peak (reported as `floor`) stays below every child it measures.

Protocol, over stdin/stdout: the bench writes marshal'd (argv, cwd, env, out_path, err_path);
this answers `pid N`, then `done CODE WALL_S CPU_S MAXRSS_KIB` once the child is reaped.
`floor` answers this process's own peak RSS in KiB (VmHWM). EOF ends it.
"""

import marshal
import os
import sys
import time


def peak_kib() -> int:
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    cmd_in, out = sys.stdin.buffer, sys.stdout
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    while True:
        try:
            job = marshal.load(cmd_in)
        except EOFError:
            return
        if job == "floor":
            out.write(f"floor {peak_kib()}\n")
            out.flush()
            continue
        argv, cwd, env, out_path, err_path = job
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, out_path, flags, 0o600),
                   (os.POSIX_SPAWN_OPEN, 2, err_path, flags, 0o600)]
        os.chdir(cwd)  # posix_spawn has no chdir action in 3.11; this process is single-threaded
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        out.write(f"pid {pid}\n")
        out.flush()
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.write(f"done {code} {wall!r} {usage.ru_utime + usage.ru_stime!r} {usage.ru_maxrss}\n")
        out.flush()


if __name__ == "__main__":
    main()
