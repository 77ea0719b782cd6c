"""Train a reward model on labelled solutions: BCE at the read positions, AdamW, minibatches.

    metrics = train(model, tokenizer, train_solutions, eval_solutions, cfg.prm, delimiter="\\n")

Process RM: one BCE term per step, target = hard label (0/1) or soft label (the
fraction of continuations that reached the answer) as set by `prm.label`.
Outcome RM: one BCE term per solution, target = the solution's correctness.
The loss is the mean over all labelled positions of the minibatch. AdamW's lr
follows prm.lr_schedule (default cosine to 0 over all epochs, after prm.warmup_steps).

Continued training (Algorithm 1): `mix_replay(new, old, fraction, seed)` keeps
every new solution and adds round(fraction * len(old)) solutions drawn without
replacement from ALL earlier ones: the paper's "replay mechanism that
incorporates 10% of historical data" read as 10% of the history, not 10% of the
new batch. Replay is by solution, never by single steps.

With prm.fit_head (default) the head's bias and surprise-feature weights are
first fitted to the labels, the backbone frozen (`fit_head`, logistic
regression, after LP-FT's linear probe), so fine-tuning starts from calibrated
scores. Without it, with few labels (the main job's labelling budget) and a
small lr, the head's bias hardly moves and the scores rank steps well but stay
off-centre (poor accuracy at 0.5), which GRPO with process supervision then
optimises towards.

Held-out metrics per epoch (`evaluate`): loss, step accuracy at 0.5 and ROC AUC
against the hard labels, and against the exact labels where the task has them.
Metric names are namespaced 'prm/...' (process) or 'orm/...' (outcome).

Departure from the paper: lr. 2e-5 is for a 7B model; the embedded tiny
backbone learns nothing useful at it in a few epochs, so PRMConfig.lr defaults
higher (see its description and bench/prm_quality.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from grpo_core.config import PRMConfig
from grpo_core.training.schedule import lr_multiplier
from prm.batch import Encoded, RMBatch, collate, encode_solution
from prm.data import LabelledSolution
from prm.model import RewardModel

T = TypeVar("T")
HEAD_FIT_L2 = 1e-3  # fit_head's L2 penalty on the surprise-feature weights
HEAD_FIT_ITERS = 200  # fit_head's L-BFGS iterations


def replay_count(n_old: int, fraction: float) -> int:
    """How many earlier items a replay of `fraction` of `n_old` takes (round half up)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"replay fraction must lie in [0, 1], got {fraction}")
    return min(n_old, math.floor(fraction * n_old + 0.5))


def mix_replay(new: Sequence[T], old: Sequence[T], fraction: float, seed: int) -> list[T]:
    """All of `new` followed by a seeded random replay_count(len(old), fraction) items of `old`."""
    picked = random.Random(seed).sample(range(len(old)), replay_count(len(old), fraction))
    return list(new) + [old[i] for i in sorted(picked)]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC by the rank formula (Mann-Whitney U), tied scores get their average rank.

    AUC = (sum of positive ranks - P(P+1)/2) / (P * N); NaN when a class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average 1-based ranks over each run of equal scores
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def encode_all(solutions: Sequence[LabelledSolution], tokenizer: Any, delimiter: str, kind: str,
               label: str) -> list[Encoded]:
    return [encode_solution(s, tokenizer, delimiter, kind, label) for s in solutions]  # type: ignore[arg-type]


def _batches(items: Sequence[Encoded], batch_size: int, pad_id: int, order: Sequence[int]) -> list[RMBatch]:
    return [collate([items[i] for i in order[lo : lo + batch_size]], pad_id) for lo in range(0, len(order), batch_size)]


def _model_inputs(model: RewardModel, b: RMBatch) -> tuple[Any, ...]:
    """A collated batch as RewardModel.forward's (and head_inputs') arguments, on the model's device."""
    device = next(model.parameters()).device
    return (b.input_ids.to(device), b.attention_mask.to(device), b.position_ids.to(device),
            b.gather_index.to(device), b.gather_mask.to(device), b.prompt_len)


def batch_logits(model: RewardModel, b: RMBatch) -> torch.Tensor:
    """model's logits (N, S) for a collated batch, on the CPU (in fp32)."""
    return model(*_model_inputs(model, b)).float().cpu()  # (N, S)


@torch.no_grad()
def _head_inputs(model: RewardModel, items: Sequence[Encoded], pad_id: int, batch_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (M, H [+ 3]), targets (M,)) of every labelled position, the model in eval mode."""
    xs, ys = [], []
    for b in _batches(items, batch_size, pad_id, range(len(items))):
        x = model.head_inputs(*_model_inputs(model, b)).float().cpu()  # (n, S, D)
        xs.append(x[b.gather_mask])
        ys.append(b.targets[b.gather_mask])
    return torch.cat(xs), torch.cat(ys)


def fit_head(model: RewardModel, items: Sequence[Encoded], pad_id: int, batch_size: int,
             l2: float = HEAD_FIT_L2) -> float:
    """Calibrate the head on the labels, the backbone frozen: fit its bias and its surprise-feature
    weights (the few inputs a handful of labels can pin down; the H weights on the hidden state
    keep their init) by L2-regularised logistic regression with L-BFGS, from the current head.

    With x = [h ; f], w = [w_h ; w_f]: minimises mean BCE(w_h . h + w_f . f + b, y) + l2 * |w_f|^2
    over every labelled position, over (w_f, b); returns that objective at the fit. Fine-tuning
    then starts from calibrated scores and from feature weights that say how much the reference
    LM's surprise tells about the labels (little, for a weak reference). Fitting all of w on
    the few labelled solutions of an iteration would overfit them (bench/prm_quality.py measures it).
    """
    was_training = model.training
    model.eval()
    x, y = _head_inputs(model, items, pad_id, batch_size)  # (M, D), (M,)
    model.train(was_training)
    hidden = model.backbone.config.hidden_size
    weight = model.head.weight.detach().float().squeeze(0).cpu()  # (D,) beside x, on the CPU
    offset = x[:, :hidden] @ weight[:hidden]  # (M,) w_h . h, held fixed
    f = x[:, hidden:]  # (M, F)
    w = weight[hidden:].clone().requires_grad_(True)  # (F,)
    b = model.head.bias.detach().float().cpu().clone().requires_grad_(True)  # (1,)
    opt = torch.optim.LBFGS([w, b], max_iter=HEAD_FIT_ITERS, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(offset + f @ w + b, y) + l2 * (w * w).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        model.head.weight[0, hidden:] = w
        model.head.bias.copy_(b)
        return float(objective())


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the masked-in positions; logits, targets, mask (N, S)."""
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (N, S)
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def evaluate(model: RewardModel, items: Sequence[Encoded], pad_id: int, batch_size: int,
             prefix: str = "prm") -> dict[str, float]:
    """Held-out loss, accuracy and AUC of step scores vs targets (and vs exact labels where known)."""
    was_training = model.training
    model.eval()
    scores, targets, exact, losses, count = [], [], [], 0.0, 0
    for b in _batches(items, batch_size, pad_id, range(len(items))):
        logits = batch_logits(model, b)  # (n, S)
        m = b.gather_mask
        losses += float(masked_bce(logits, b.targets, m)) * int(m.sum())
        count += int(m.sum())
        scores.append(torch.sigmoid(logits)[m])
        targets.append(b.targets[m])
        exact.append(b.exact[m])
    model.train(was_training)
    if not count:
        return {}
    p, y, e = torch.cat(scores).numpy(), torch.cat(targets).numpy() >= 0.5, torch.cat(exact).numpy()
    out = {
        f"{prefix}/eval_loss": losses / count,
        f"{prefix}/eval_acc": float(((p >= 0.5) == y).mean()),
        f"{prefix}/eval_auc": roc_auc(p, y),
        f"{prefix}/eval_steps": float(count),
        f"{prefix}/eval_pos_rate": float(y.mean()),
    }
    known = ~np.isnan(e)
    if known.any():
        ye = e[known] >= 0.5
        out[f"{prefix}/eval_acc_exact"] = float(((p[known] >= 0.5) == ye).mean())
        out[f"{prefix}/eval_auc_exact"] = roc_auc(p[known], ye)
    return out


def train(
    model: RewardModel,
    tokenizer: Any,
    train_solutions: Sequence[LabelledSolution],
    eval_solutions: Sequence[LabelledSolution],
    cfg: PRMConfig,
    *,
    delimiter: str,
    log: Any | None = None,
) -> dict[int, dict[str, float]]:
    """Train `model` in place for cfg.epochs epochs; returns {epoch (1-based): metrics}."""
    kind = model.kind
    prefix = "prm" if kind == "process" else "orm"
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token: load it with grpo_core.policy.load.load_tokenizer")
    if not train_solutions:
        raise ValueError("no labelled solutions to train on")
    train_items = encode_all(train_solutions, tokenizer, delimiter, kind, cfg.label)
    eval_items = encode_all(eval_solutions, tokenizer, delimiter, kind, "hard")
    torch.manual_seed(cfg.seed)
    head_fit = fit_head(model, train_items, pad_id, cfg.batch_size) if cfg.fit_head else None
    trainable = [p for p in model.parameters() if p.requires_grad]  # not the frozen surprise reference
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_batches = math.ceil(len(train_items) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(cfg.lr_schedule, cfg.warmup_steps, cfg.epochs * n_batches)
    )
    rng = random.Random(cfg.seed)
    history: dict[int, dict[str, float]] = {}
    n_positions = sum(len(e.ends) for e in train_items)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = list(range(len(train_items)))
        rng.shuffle(order)
        loss_sum, tokens = 0.0, 0
        for b in _batches(train_items, cfg.batch_size, pad_id, order):
            logits = batch_logits(model, b)  # (n, S)
            loss = masked_bce(logits, b.targets, b.gather_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * int(b.gather_mask.sum())
            tokens += b.n_tokens
        seconds = time.perf_counter() - t0
        metrics = {
            f"{prefix}/train_loss": loss_sum / max(1, n_positions),
            f"{prefix}/train_solutions": float(len(train_items)),
            f"{prefix}/train_steps": float(n_positions),
            f"{prefix}/train_tokens_per_s": tokens / seconds if seconds > 0 else math.nan,
            f"{prefix}/epoch_s": seconds,
        }
        if cfg.fit_head:
            metrics[f"{prefix}/head_fit_loss"] = head_fit
        if eval_items:
            metrics.update(evaluate(model, eval_items, pad_id, cfg.batch_size, prefix))
        history[epoch] = metrics
        if log is not None:
            log(epoch, metrics)
    model.eval()
    return history
