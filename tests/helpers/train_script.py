"""Run a small GRPO training in its own process (for the kill-and-resume test)."""

import sys
from pathlib import Path

from grpo_core.config import load_config
from grpo_core.data.synthetic import generate_splits
from grpo_core.store import Store
from grpo_core.training.trainer import train_grpo

policy, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
cfg = load_config(None, [
    f"store.root={out / 'store'}", "logging.progress=false", "grpo.group_size=4", "grpo.questions_per_step=4",
    "grpo.minibatch_size=16", f"grpo.steps={steps}", "grpo.checkpoint_every=1", "rollout.max_new_tokens=24",
])
train = generate_splits(cfg.task.synthetic, cfg.task.seed)[0]
train_grpo(cfg, policy, train, Store(cfg.store.root), out / "run", run_id="run")
