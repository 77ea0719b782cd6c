"""Work in its own process, for flows that run many at once (sweep trials, an experiment's runs).

    code = run_module("flows.trial", ["--config", path, "--number", "3"], threads=1, log_path=log)
    error = failure(future, log)        # None, or the exit code and the end of the log

A process of its own gives each piece of work its own torch RNG and thread settings, and a crash (even a
segfault) takes nothing else down. With `threads`, torch and its OpenMP/MKL pools use that many threads
(one each when the processes share the cores); the process logs nowhere but `log_path`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOG_TAIL = 20  # lines of a failed process's log kept as its error


def run_module(module: str, args: list[str], threads: int, log_path: Path | str) -> int:
    """`python -m module args...`, stdout and stderr to `log_path`; returns its exit code. `threads` > 0
    sets OMP_NUM_THREADS / MKL_NUM_THREADS (torch's default thread count); 0 leaves torch's default."""
    env = dict(os.environ, PREFECT_LOGGING_TO_API_ENABLED="false")  # the process has no flow run to log to
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log_path, "w") as out:
        return subprocess.run([sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode


def failure(future: object, log_path: Path, what: str = "process") -> str | None:
    """Why a task that ran a process ended badly: its exit code and the end of its log; None if it exited 0."""
    try:
        code = future.result()  # type: ignore[attr-defined]
    except Exception as err:  # the task itself failed (e.g. the process could not start)
        return f"{what} task failed: {err!r}"
    if code == 0:
        return None
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL:] if log_path.exists() else []
    return "\n".join([f"{what} process exited with {code}", *tail])
