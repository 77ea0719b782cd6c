"""GRPO under a multi-process launcher (DeepSpeed, torchrun): the iterations of one run, no Prefect.

    deepspeed --num_gpus 8 --no_local_rank -m grpo_core.pipeline.launch --config configs/default.yaml \
        grpo.backend=deepspeed grpo.deepspeed_config=configs/deepspeed/zero3.json

Every rank runs this module. Each iteration sets the reference to the current
policy and runs `grpo.steps` steps (grpo_core.pipeline.stages.grpo_iteration); rank 0
records the run and writes the store and checkpoints, the others only train
(see grpo_core.training.trainer). Rerunning the same command resumes from the last
checkpoint. Evaluation and reports stay with the Prefect flows (`grpo run`),
which can start from this run's checkpoints (`model.path=...`).
"""

from __future__ import annotations

import argparse
import logging
import os

from grpo_core.pipeline import stages as pipeline
from grpo_core.config import load_config


def main(argv: list[str] | None = None) -> None:
    """Parse `--config F key=value ...` and run every iteration of the run on this rank."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML config (default: all defaults)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.steps=20")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"[rank {rank}] %(message)s")
    cfg = load_config(args.config, args.overrides)
    if rank:
        cfg = cfg.model_copy(update={"logging": cfg.logging.model_copy(update={"progress": False})})
    policy = pipeline.policy_dir(cfg)  # built once under a lock; the other ranks wait and reuse it
    run_id = pipeline.start_run(cfg) if rank == 0 else pipeline.run_id_for(cfg)
    for iteration in range(1, cfg.iterative.iterations + 1):
        result = pipeline.grpo_iteration(cfg, policy, run_id, iteration)
        policy = result.policy_dir  # the next iteration's start and reference
        logging.info("iteration %d: %d steps in %.1f s, policy %s", iteration, result.steps_done, result.seconds,
                     policy)


if __name__ == "__main__":
    main()
