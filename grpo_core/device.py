"""Where models and batches live, and the precision of their forward passes (config `device`, `precision`).

    device = resolve_device(cfg.device)          # auto -> cuda (the rank's) when CUDA is available, else cpu
    model, tok = load_policy(path, device=device)
    with autocast(device, cfg.precision):        # bf16: forward passes in bf16, the loss stays fp32
        logp = token_logprobs(model, batch.to(device), temperature)

Under a `torchrun`/`deepspeed` launch (LOCAL_RANK set) `auto` and `cuda` give
each rank its own GPU, `cuda:LOCAL_RANK`, the device DeepSpeed puts the
rank's engine on, so the reference model and the PRM sit beside the policy.

bf16 autocast (torch.autocast) runs matmuls and attention in bfloat16 and keeps
autocast's fp32 ops (softmax, log-softmax, norms' reductions) in fp32. The
log-probs that feed the loss are taken from fp32 logits
(grpo_core.maths.batch.sampled_logprobs casts first), so the ratio of Eq. 3,
the k3 KL of Eq. 4 and the loss are fp32 under either precision.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext

import torch

from grpo_core.config import DEVICE_PATTERN, Precision


def resolve_device(spec: str) -> torch.device:
    """The torch.device named by the `device` knob (`auto`, `cpu`, `cuda`, `cuda:N`) on this machine and rank."""
    _check_spelling(spec)
    if _names_cpu(spec):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device={spec!r} but this torch sees no CUDA device (torch.cuda.is_available() is False): "
            "set device=cpu, or device=auto to take a GPU only where there is one"
        )
    local_rank = os.environ.get("LOCAL_RANK")
    index = int(spec.split(":")[1]) if ":" in spec else int(local_rank or 0)
    if local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and index != int(local_rank):
        raise ValueError(
            f"device={spec!r} under a launch of several ranks: each rank takes cuda:LOCAL_RANK "
            f"(here cuda:{local_rank}); set device=cuda or device=auto"
        )
    if index >= torch.cuda.device_count():
        raise ValueError(f"device={spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    return torch.device("cuda", index)


def device_kind(spec: str) -> str:
    """'cpu' or 'cuda': the kind of device `spec` names here, the part of a device that changes a run's
    numbers (auto is cuda where CUDA is available; cuda:0 and cuda:1 compute the same)."""
    _check_spelling(spec)
    return "cpu" if _names_cpu(spec) else "cuda"


def _check_spelling(spec: str) -> None:
    if not re.fullmatch(DEVICE_PATTERN, spec):
        raise ValueError(f"device={spec!r}: use auto (CUDA when available, else CPU), cpu, cuda or cuda:N")


def _names_cpu(spec: str) -> bool:
    """Whether `spec` means the CPU on this machine: `cpu`, or `auto` where torch sees no CUDA."""
    return spec == "cpu" or (spec == "auto" and not torch.cuda.is_available())


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager:
    """The forward passes' precision: fp32 as the weights are, or bf16 autocast on `device`'s type."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
