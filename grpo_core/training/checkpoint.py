"""Training checkpoints: model, optimizer, scheduler, RNG and step, written atomically.

Layout: `{run_dir}/checkpoints/step-{step:06d}/` holding the HF model dir
(`save_pretrained`, so a checkpoint loads like any model path) and
`trainer_state.pt` (step, RNG, and the backend's optimizer/scheduler state)
and `code_fingerprint` (grpo_core.provenance: the code that wrote it);
a DeepSpeed backend adds `deepspeed/` (its own, per-rank optimizer state; see
grpo_core.training.backend). A checkpoint is written to a temp dir and renamed, so a
crash leaves either the old set or the new one, never half a checkpoint.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_core.provenance import code_fingerprint

STATE_FILE = "trainer_state.pt"
CODE_FILE = "code_fingerprint"


@dataclass
class Checkpoint:
    path: Path
    step: int


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run, if any."""
    root = run_dir / "checkpoints"
    found = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists()) if root.exists() else []
    return Checkpoint(found[-1], int(found[-1].name.split("-")[1])) if found else None


def save(
    run_dir: Path,
    step: int,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    state: dict[str, Any],
    *,
    keep: int = 2,
    extra: Callable[[Path], None] | None = None,
    rank: int = 0,
    barrier: Callable[[], None] | None = None,
) -> Path:
    """Write checkpoint `step` (the number of finished steps) and keep the newest `keep`.

    `state` (optimizer, scheduler, ...) goes into trainer_state.pt with the step
    and RNG. With several ranks, every rank calls this: `extra(tmp_dir)` runs on
    all of them (a collective save such as DeepSpeed's), the rest on rank 0,
    separated by `barrier`.
    """
    sync = barrier or (lambda: None)
    root = run_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    sync()
    if extra is not None:
        extra(tmp)
    sync()
    if rank == 0:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        torch.save({"step": step, "rng": rng, **state}, tmp / STATE_FILE)
        (tmp / CODE_FILE).write_text(code_fingerprint())
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(root.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    sync()
    return final


def recorded_code(ckpt: Checkpoint) -> str | None:
    """The code fingerprint `ckpt` was written by (None for a checkpoint from before fingerprints)."""
    path = ckpt.path / CODE_FILE
    return path.read_text().strip() if path.is_file() else None


def restore(ckpt: Checkpoint) -> dict[str, Any]:
    """Restore the RNG state saved with `ckpt` and return its trainer state (step, optimizer, ...)."""
    state = torch.load(ckpt.path / STATE_FILE, weights_only=False)
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state
