"""Learning-rate schedules shared by the GRPO trainer and reward-model training.

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier("cosine", warmup_steps=10, total_updates=200))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

Schedule = Literal["constant", "cosine", "linear"]  # the config fields' type (grpo.lr_schedule, prm.lr_schedule)


def lr_multiplier(schedule: Schedule, warmup_steps: int, total_updates: int,
                  floor: float = 0.0) -> Callable[[int], float]:
    """Multiplier of the peak lr after `u` optimizer updates: linear warmup over
    `warmup_steps`, then constant, cosine or linear decay reaching `floor` at `total_updates`."""
    if schedule not in get_args(Schedule):
        raise ValueError(f"lr schedule must be 'constant', 'cosine' or 'linear', got {schedule!r}")

    def f(u: int) -> float:
        if u < warmup_steps:
            return (u + 1) / warmup_steps
        frac = min(1.0, (u - warmup_steps) / max(1, total_updates - warmup_steps))
        if schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
        if schedule == "linear":
            return floor + (1 - floor) * (1 - frac)
        return 1.0

    return f
