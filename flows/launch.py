"""Algorithm 1 under a multi-process launcher (DeepSpeed, torchrun): every iteration of one run, no Prefect.

    deepspeed --num_gpus 8 --no_local_rank -m flows.launch --config configs/default.yaml \
        grpo.backend=deepspeed grpo.deepspeed_config=configs/deepspeed/zero3.json
    python -m flows.launch --config configs/default.yaml   # one process: the pipeline without Prefect

Every rank runs this module, through the same loop as the Prefect flow
(grpo_core.pipeline.iterate.run_iterations) with the stages as plain calls
(flows.stages). The GRPO stage runs on every rank (each trains on its share of
every minibatch; rank 0 writes the store and checkpoints, see
grpo_core.training.trainer). The other stages (evaluation, PRM labelling and
training) run on rank 0 alone and their result is broadcast to the other ranks,
which wait for it. Rerunning the same command resumes each GRPO iteration from
its last checkpoint; a finished evaluation is read back from the store
(flows.stages.evaluate), finished PRM stages are recomputed (there is no Prefect
cache here). The report: `grpo report RUN_ID`. An experiment's runs
(flows.experiment) each run as this module in their own process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from flows import stages  # noqa: E402
from grpo_core.config import ExperimentConfig, load_config  # noqa: E402
from grpo_core.pipeline.iterate import IterativeResult, Stages, run_iterations  # noqa: E402
from grpo_core.pipeline.stages import run_id_for, start_run  # noqa: E402

R = TypeVar("R")


def rank_zero_stages(rank: int, broadcast: Callable[[list[Any]], None]) -> Stages:
    """flows.stages.PLAIN with evaluation and the PRM stages run by rank 0 alone; `broadcast(box)`
    hands rank 0's one-element list to every rank (a no-op with one process)."""

    def on_rank_zero(fn: Callable[..., R]) -> Callable[..., R]:
        def run(*args: Any) -> R:
            box = [fn(*args) if rank == 0 else None]
            broadcast(box)
            return box[0]
        return run

    plain = stages.PLAIN
    return Stages(bootstrap_policy=plain.bootstrap_policy, evaluate=on_rank_zero(plain.evaluate),
                  label_steps=on_rank_zero(plain.label_steps),
                  train_reward_model=on_rank_zero(plain.train_reward_model), grpo=plain.grpo)


def _broadcaster(world_size: int) -> Callable[[list[Any]], None]:
    """torch.distributed's object broadcast from rank 0, its process group started here (gloo on CPU,
    NCCL on GPUs; DeepSpeed then reuses it); nothing with one process."""
    if world_size == 1:
        return lambda box: None
    import torch

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return lambda box: torch.distributed.broadcast_object_list(box, src=0)


def launch(cfg: ExperimentConfig, rank: int, world_size: int) -> IterativeResult:
    """Record the run (rank 0) and run every iteration of it on this rank."""
    broadcast = _broadcaster(world_size)
    box = [start_run(cfg) if rank == 0 else None]
    broadcast(box)  # the other ranks start only once rank 0 has accepted the run (code fingerprint)
    run_id = box[0] or run_id_for(cfg)

    def log_evaluation(iteration: int, evaluation: dict[str, float]) -> bool:
        logging.info("iteration %d: %s", iteration, {k: round(v, 3) for k, v in evaluation.items()})
        return False

    result = run_iterations(cfg, rank_zero_stages(rank, broadcast), run_id, on_evaluation=log_evaluation)
    if rank == 0:
        start_run(cfg, status="finished")
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse `--config F key=value ...` and run every iteration of the run on this rank."""
    parser = argparse.ArgumentParser(prog="python -m flows.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML config (default: all defaults)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.steps=20")
    args = parser.parse_args(argv)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"[rank {rank}] %(message)s")
    cfg = load_config(args.config, args.overrides)
    if rank:
        cfg = cfg.model_copy(update={"logging": cfg.logging.model_copy(update={"progress": False})})
    result = launch(cfg, rank, world_size)
    if rank == 0:
        logging.info("run %s done: policy %s; report: grpo report %s", result.run_id, result.policy, result.run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
