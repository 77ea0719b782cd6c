"""Small summaries read back from the store, for logs and printed reports."""

from __future__ import annotations

from pathlib import Path

from analysis.catalog import connect


def ks_up_to(k_max: int) -> list[int]:
    """K = 1, 2, 4, ... up to and including k_max."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return [*ks, k_max]


def eval_summary(root: Path, run_id: str, iteration: int, step: int, k_max: int) -> dict[str, float]:
    """{'greedy_accuracy', 'wellformed_rate' (of the greedy completions), 'pass@K', 'maj@K'} of one
    stored evaluation for K = 1, 2, 4, ..., k_max, from the store's `evals` view and `eval_at_k` macro."""
    con = connect(root, read_only=True)
    out: dict[str, float] = {}
    try:
        greedy = con.execute(
            "select greedy_accuracy, greedy_wellformed_rate from evals "
            "where run_id = $run and iteration = $it and step = $step",
            {"run": run_id, "it": iteration, "step": step},
        ).fetchall()
        if greedy:
            out["greedy_accuracy"], out["wellformed_rate"] = greedy[0]
        for k in ks_up_to(k_max):
            row = con.execute(
                "select pass_at_k, maj_at_k from eval_at_k($k) where run_id = $run and iteration = $it and step = $step",
                {"k": k, "run": run_id, "it": iteration, "step": step},
            ).fetchall()
            if row:
                out[f"pass@{k}"], out[f"maj@{k}"] = row[0]
    finally:
        con.close()
    return out
