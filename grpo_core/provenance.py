"""Which code produced a result: a fingerprint of the project's package sources.

    code_fingerprint()   # e.g. 'src-3f2a9c0d41be', the same for the same sources

The run id hashes the configuration only, so the same config rerun after an
edit to, say, the loss would otherwise resume the old run's checkpoints, take
Prefect's cached stage results and overwrite its store files as if nothing had
changed. The fingerprint is a SHA-256 over the relative path and bytes of every
`.py` and `.sql` file of the four packages (grpo_core, prm, analysis, flows) as
they are imported, so an uncommitted edit counts and a commit that touches only
the README or a test does not. It is recorded with each run (the runs table,
beside the git commit), in each checkpoint, and in every Prefect cache key;
`grpo_core.pipeline.stages.start_run` and the trainer's resume refuse to mix two
fingerprints in one run unless `store.allow_code_change` is set.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
from pathlib import Path

PACKAGES = ("grpo_core", "prm", "analysis", "flows")
SUFFIXES = (".py", ".sql")


class CodeChangedError(RuntimeError):
    """A run (or checkpoint) recorded by other code would be continued by this code."""


def package_dirs(packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    """The directories the packages were imported from (a copy on PYTHONPATH wins over the install)."""
    return [Path(p) for name in packages for p in importlib.import_module(name).__path__]


def source_digest(roots: list[Path]) -> str:
    """SHA-256 (hex) over every source file under `roots`: relative path and contents, in sorted order."""
    digest = hashlib.sha256()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts)
        for path in files:
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def modules_digest(modules: tuple[str, ...]) -> str:
    """SHA-256 (hex) over the source files of the named modules (e.g. the few a cached artifact is built by)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"module {name!r} is not importable")
        digest.update(f"{name}\0".encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """`src-` and the first 12 hex digits of the package sources' digest; computed once per process."""
    return "src-" + source_digest(package_dirs())[:12]


def check_same_code(recorded: str | None, what: str, *, allow: bool) -> None:
    """Refuse to continue `what` (recorded by code `recorded`) with this code, unless `allow`.

    A record without a fingerprint (written before fingerprints existed) is taken as unknown code
    and refused the same way."""
    current = code_fingerprint()
    if recorded == current or allow:
        return
    raise CodeChangedError(
        f"{what} was produced by code {recorded or '(unrecorded)'}, but this code is {current}: its results, "
        "cached stages and checkpoints would mix with this code's. Start a fresh run (another `run_name=...`, "
        "or delete the run's store files and run dir), or continue it with this code anyway with "
        "`store.allow_code_change=true` (`grpo run --allow-code-change`)."
    )
