"""Bench: N GRPO steps on the embedded default policy; seconds per step by phase, peak memory.

    .venv/bin/python bench/bench_grpo.py [--steps N] [section.field=value ...]

Phases come from the trainer's own `time/*_s` step metrics: generate (rollouts),
logprob (reference forward pass, and old-policy pass over the sequences the
first update does not score itself: none with mu = 1 and one minibatch), train (forward/backward and
optimizer), reward (verify, rewards, advantages, packing), sync (weights into
the rollout engine) and store (rows and Parquet). Target: everything but
generation and the forward/backward passes, i.e. (reward + sync + store +
unaccounted bookkeeping) / step, under 5%. Peak memory is
the process's max RSS (target: under 4 GiB for the main job), and with
`device=cuda` also the peak GPU memory torch allocated. Tokens/s counts the
sampled completion tokens (B x G x mean length) per second of the whole step.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.config import load_config  # noqa: E402
from grpo_core.pipeline.stages import load_data, policy_dir  # noqa: E402
from grpo_core.store import Store  # noqa: E402
from grpo_core.training.trainer import train_grpo  # noqa: E402

MODEL_PHASES = ("generate", "logprob", "train")
OTHER_PHASES = ("reward", "sync", "store")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"grpo.steps={args.steps}", "grpo.checkpoint_every=0", "logging.progress=false",
                                 f"store.root={tmp}/store", *args.overrides])
        policy = policy_dir(cfg)  # the cached embedded policy (built on first use)
        train, _ = load_data(cfg)
        result = train_grpo(cfg, policy, train.problems, Store(cfg.store.root), Path(tmp) / "run", run_id="bench")
    history = result.history[1:] or result.history  # step 1 warms up
    mean = lambda key: sum(h[key] for h in history) / len(history)  # noqa: E731
    step = mean("time/step_s")
    print(f"GRPO steps: {len(history)} measured (B={cfg.grpo.questions_per_step}, G={cfg.grpo.group_size}, "
          f"max_new_tokens={cfg.rollout.max_new_tokens}), {step:.3f} s/step")
    for phase in (*MODEL_PHASES, *OTHER_PHASES):
        t = mean(f"time/{phase}_s")
        print(f"  {phase:<9} {t:8.3f} s  {t / step:6.1%}")
    model_time = sum(mean(f"time/{p}_s") for p in MODEL_PHASES)
    other = step - model_time
    print(f"  overhead (reward + sync + store + bookkeeping) {other:.3f} s = {other / step:.2%} of the step (target < 5%)")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory (max RSS) {peak_gib:.2f} GiB (target < 4 GiB)")
    tokens = cfg.grpo.questions_per_step * cfg.grpo.group_size * mean("rollout/mean_length")
    print(f"sampled tokens/s {tokens / step:.0f} (device={cfg.device}, precision={cfg.precision}, "
          f"backend={cfg.grpo.backend})")
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        print(f"peak GPU memory (torch max_memory_allocated) {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
