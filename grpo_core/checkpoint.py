"""Training checkpoints: model, optimizer, scheduler, RNG and step, written atomically.

Layout: `{run_dir}/checkpoints/step-{step:06d}/` holding the HF model dir
(`save_pretrained`, so a checkpoint loads like any model path) and
`trainer_state.pt`. A checkpoint is written to a temp dir and renamed, so a
crash leaves either the old set or the new one, never half a checkpoint.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

STATE_FILE = "trainer_state.pt"


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
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` (the number of finished steps) and keep the newest `keep`."""
    root = run_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore(
    ckpt: Checkpoint, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> int:
    """Load optimizer, scheduler and RNG state (the model loads from `ckpt.path`); return the step."""
    state = torch.load(ckpt.path / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return int(state["step"])
