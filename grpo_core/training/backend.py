"""Training backends: the one seam between the GRPO loop and how an update is applied.

    backend = make_backend(cfg.grpo, model, total_updates)
    logp = token_logprobs(backend.module, minibatch, T)     # forward through the backend's module
    grad_norm = backend.step(loss)                          # backward, clip, optimizer and lr step
    backend.save(run_dir, step, tok) / backend.restore(ckpt)

`torch`: AdamW + LambdaLR on the plain model. `deepspeed`: the same AdamW
(`"torch_adam": true`, no fused-op compile), clipping and schedule inside a
DeepSpeed engine with the ZeRO stage of `grpo.deepspeed_config`
(configs/deepspeed/zero{0,1,2,3}.json). The GRPO config stays the one source of
the lr, weight decay, clip norm and batch size: the backend writes them into
the DeepSpeed config, replacing what the file says.

The reference model is never given to a backend: it stays a frozen plain
module (`requires_grad_(False)`, eval mode) on every rank, used only under
`no_grad` for pi_ref log-probs, with either backend.

Checkpoints keep one layout for both backends (grpo_core.training.checkpoint): the
full HF model dir (gathered from ZeRO-3 partitions), so a checkpoint loads like
any model path, plus trainer state. DeepSpeed's optimizer and scheduler state
is saved with `engine.save_checkpoint` under `deepspeed/` in the same
checkpoint dir (partitioned per rank, so resume needs the same world size).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_core.training import checkpoint
from grpo_core.config import GRPOConfig

LrLambda = Callable[[int], float]
REPO = Path(__file__).resolve().parents[1]


class TrainBackend(Protocol):
    """Applies updates to the policy; `module` is what the loop forwards through."""

    module: torch.nn.Module
    rank: int
    world_size: int

    def step(self, loss: torch.Tensor) -> float: ...

    def lr(self) -> float: ...

    def save(self, run_dir: Path, step: int, tokenizer: PreTrainedTokenizerBase) -> None: ...

    def restore(self, ckpt: checkpoint.Checkpoint) -> int: ...


class TorchBackend:
    """AdamW + LambdaLR on the plain model, in this process."""

    rank = 0
    world_size = 1

    def __init__(self, model: PreTrainedModel, g: GRPOConfig, lr_lambda: LrLambda):
        self.module = model
        self.max_grad_norm = g.max_grad_norm
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=g.lr, weight_decay=g.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)

    def step(self, loss: torch.Tensor) -> float:
        """One optimizer update from `loss`; returns the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.max_grad_norm if self.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(grad_norm)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, run_dir: Path, step: int, tokenizer: PreTrainedTokenizerBase) -> None:
        checkpoint.save(run_dir, step, self.module, tokenizer,
                        {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()})

    def restore(self, ckpt: checkpoint.Checkpoint) -> int:
        state = checkpoint.restore(ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return int(state["step"])


def init_distributed_env() -> None:
    """Defaults for a single process when no launcher set the rendezvous variables (DeepSpeed needs them)."""
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29517"), ("RANK", "0"),
                       ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, value)
    # Compiled DeepSpeed ops (the CPU shared-memory op takes ~70 s) are kept and reused across runs.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path("runs/torch_extensions").resolve()))


def deepspeed_config(g: GRPOConfig, world_size: int) -> dict:
    """The JSON at `g.deepspeed_config` with lr, weight decay, clipping and batch sizes from `g`."""
    path = Path(g.deepspeed_config)
    if not path.is_absolute() and not path.exists():
        path = REPO / path  # the configs/deepspeed/ files that ship with the code
    ds = json.loads(path.read_text())
    micro = max(1, g.minibatch_size // world_size)  # each rank takes its share of every minibatch
    ds["train_micro_batch_size_per_gpu"] = micro
    ds["gradient_accumulation_steps"] = 1
    ds["train_batch_size"] = micro * world_size
    ds["gradient_clipping"] = g.max_grad_norm
    optimizer = ds.setdefault("optimizer", {"type": "AdamW", "params": {}})
    optimizer["params"].update(lr=g.lr, weight_decay=g.weight_decay)
    optimizer["params"].setdefault("torch_adam", True)  # torch.optim.AdamW: no fused op to compile
    return ds


class DeepSpeedBackend:
    """A DeepSpeed engine (ZeRO stage from the JSON) over the model; gloo on CPU, NCCL on GPUs."""

    def __init__(self, model: PreTrainedModel, g: GRPOConfig, lr_lambda: LrLambda):
        init_distributed_env()
        import deepspeed

        placed = next(model.parameters()).device  # where the trainer put the policy, the reference beside it
        deepspeed.init_distributed()
        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=deepspeed_config(g, self.world_size),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda),
        )
        self.module = self.engine  # forward through the engine: ZeRO-3 gathers partitions in its hooks
        check_same_device(torch.device(self.engine.device), placed)

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip (`gradient_clipping`), optimizer and lr step; returns the global gradient norm."""
        self.engine.backward(loss)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, run_dir: Path, step: int, tokenizer: PreTrainedTokenizerBase) -> None:
        """All ranks: DeepSpeed state (collective); rank 0: the gathered HF model dir and trainer state."""
        import deepspeed

        params = [p for p in self.engine.module.parameters() if hasattr(p, "ds_status")]
        with deepspeed.zero.GatheredParameters(params):  # no-op below ZeRO-3
            checkpoint.save(run_dir, step, self.engine.module, tokenizer, {},
                            extra=lambda d: self.engine.save_checkpoint(str(d / "deepspeed"), tag="state"),
                            rank=self.rank, barrier=torch.distributed.barrier)

    def restore(self, ckpt: checkpoint.Checkpoint) -> int:
        self.engine.load_checkpoint(str(ckpt.path / "deepspeed"), tag="state",
                                    load_optimizer_states=True, load_lr_scheduler_states=True)
        return int(checkpoint.restore(ckpt)["step"])


def check_same_device(engine: torch.device, placed: torch.device) -> None:
    """DeepSpeed puts its engine on the rank's device (cuda:LOCAL_RANK); the reference model and the PRM
    were placed by the `device` knob, so both must name the same device (a CPU is one device)."""
    same = engine.type == placed.type and (engine.type == "cpu" or (engine.index or 0) == (placed.index or 0))
    if not same:
        raise ValueError(
            f"DeepSpeed placed the policy on {engine}, but device= placed the models on {placed}: under a "
            "deepspeed/torchrun launch set device=auto or device=cuda (each rank takes cuda:LOCAL_RANK)"
        )


def make_backend(g: GRPOConfig, model: PreTrainedModel, lr_lambda: LrLambda) -> TrainBackend:
    """The backend named by `grpo.backend` over `model` (which must be on its device already)."""
    if g.backend == "torch":
        return TorchBackend(model, g, lr_lambda)
    if g.backend == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "grpo.backend=deepspeed needs DeepSpeed: `make setup-scale` or `pip install -e '.[deepspeed]'`"
            ) from err
        return DeepSpeedBackend(model, g, lr_lambda)
    raise ValueError(f"grpo.backend={g.backend!r}: use 'torch' or 'deepspeed'")
