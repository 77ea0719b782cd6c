"""Bench: how wide the report's intervals are for an evaluation setting, against what the evaluation costs.

    .venv/bin/python bench/bench_eval_precision.py                     # self-evaluation, settings 200x16,200x32,400x16
    .venv/bin/python bench/bench_eval_precision.py --quick             # smoke test: 20 problems x 8 samples
    .venv/bin/python bench/bench_eval_precision.py --run RUN_ID [--store runs/store] [--settings 200x8,200x16]

A setting is P held-out problems x n samples per problem (eval.n_problems x eval.n_samples). For each, the
half-width of the 95% paired-bootstrap interval (analysis/stats.py, the report's knobs) of the greedy,
Pass@K and Maj@K differences, with Maj@K both over one set of disjoint vote groups (partitions := 1) and
over the default 8 partitions (analysis/sql/maj_at_k_per_problem.sql), K = min(--k, n). Every score comes
from the SQL macros, over a subsample of the stored rows: the first P problems (by problem_id) and
sample_index < n.

Two sources of rows:
  * --run RUN_ID: the evaluation rollouts a real run stored; before = its iteration 0, after = its last
    iteration: the intervals the report would print for that run at the smaller setting. Settings larger
    than what the run stored are skipped. Cost: the generated tokens of the subsample (the store has no
    evaluation timings).
  * no --run (default): the embedded policy (built if not cached, as `grpo run` would) is evaluated once here
    on the held-out split, greedy plus 2 x n_max samples per problem, timed. The differences are A/A: the
    samples [0, n) against [n, 2n) of the same policy, so their intervals are the sampling-noise floor of a
    before-vs-after difference (the real one adds the spread of RL's effect over problems; --run measures
    it). Greedy decoding is deterministic, so its A/A difference is 0: the greedy column then gives the
    half-width of greedy accuracy itself. Cost: seconds and generated tokens of the greedy pass and of n
    samples per problem, prorated from the one timed evaluation by tokens generated. A setting with more
    problems than the held-out split (task.synthetic.n_test, which changes the built policy) is
    extrapolated from the largest measured P by sqrt(P_measured / P) and marked '*'.

Timing needs an otherwise idle machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.catalog import connect  # noqa: E402
from analysis.stats import paired_bootstrap_diff  # noqa: E402
from grpo_core.config import ExperimentConfig, ReportConfig, load_config  # noqa: E402

DEFAULT_SETTINGS = "200x16,200x32,400x16"
QUICK_SETTINGS = "20x4,20x8"
COLUMNS = ("greedy", "pass", "maj_1", "maj_8")  # maj_R: Maj@K over R partitions


def parse_settings(text: str) -> list[tuple[int, int]]:
    """'200x16,400x16' -> [(200, 16), (400, 16)]."""
    out = []
    for item in text.split(","):
        try:
            p, n = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--settings: {item!r} is not PROBLEMSxSAMPLES, e.g. 200x16") from None
        if p < 2 or n < 1:
            raise SystemExit(f"--settings: {item!r} needs at least 2 problems and 1 sample")
        out.append((p, n))
    return out


def subsample_view(con, run_id: str, problems: int, n: int, *, aa: bool) -> None:
    """Shadow `rollouts` (a temp view over the files) with the first `problems` eval problems of run_id and
    sample_index < n; with aa, samples [n, 2n) become iteration 1 (relabelled 0..n-1) and greedy rows stay."""
    con.execute("create or replace temp view rollouts as from _rollouts_files")  # the files, for the id list
    ids = [p for (p,) in con.execute(
        "select distinct problem_id from rollouts where run_id = ? and split = 'eval' order by 1 limit ?",
        [run_id, problems]).fetchall()]
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in ids)
    if aa:
        body = (f"select * replace (iteration + (sample_index >= {n})::int as iteration, sample_index % {n} as "
                f"sample_index) from _rollouts_files where run_id = '{run_id}' and split = 'eval' and problem_id in "
                f"({listed}) and (decoding = 'greedy' or sample_index < {2 * n})")
    else:
        body = (f"select * from _rollouts_files where run_id = '{run_id}' and split = 'eval' and problem_id in "
                f"({listed}) and (decoding = 'greedy' or sample_index < {n})")
    con.execute(f"create or replace temp view rollouts as {body}")


def scores(con, k: int, iteration: int, step: int) -> dict[str, dict[str, float]]:
    """Per problem: greedy, Pass@k, Maj@k over 1 and over 8 partitions, of one evaluation."""
    out: dict[str, dict[str, float]] = {c: {} for c in COLUMNS}
    where = {"k": k, "it": iteration, "step": step}
    for p, g, pa in con.execute("select problem_id, greedy_correct, pass_at_k from problem_scores($k) "
                                "where iteration = $it and step = $step", where).fetchall():
        if g is not None:
            out["greedy"][p] = g
        if pa is not None:
            out["pass"][p] = pa
    for r in (1, 8):
        out[f"maj_{r}"] = dict(con.execute(
            "select problem_id, maj_at_k from maj_at_k_per_problem($k, partitions := $r) "
            "where iteration = $it and step = $step", {**where, "r": r}).fetchall())
    return out


def half_widths(before: dict, after: dict, stats: ReportConfig, *, greedy_alone: bool) -> dict[str, float]:
    """Half-width (points) of the paired interval of each column; the greedy one of `after` alone if asked."""
    out = {}
    for c in COLUMNS:
        a, b = before[c], after[c]
        if c == "greedy" and greedy_alone:  # A/A greedy is identical: the interval of the accuracy itself
            a, b = {p: 0.0 for p in before[c]}, before[c]
        common = sorted(set(a) & set(b))
        if len(common) < 2:
            out[c] = math.nan
            continue
        ci = paired_bootstrap_diff(np.array([a[p] for p in common]), np.array([b[p] for p in common]),
                                   resamples=stats.resamples, seed=stats.seed, level=stats.level)
        out[c] = 100 * (ci.high - ci.low) / 2
    return out


def sampled_tokens(con, run_id: str, n: int, iteration: int | None = None) -> tuple[int, int]:
    """(greedy tokens, sampled tokens) of the current subsample view (one iteration, or all)."""
    it = "" if iteration is None else f" and iteration = {iteration}"
    g, s = con.execute(f"select coalesce(sum(n_tokens) filter (where decoding = 'greedy'), 0), "
                       f"coalesce(sum(n_tokens) filter (where decoding = 'sample'), 0) from rollouts "
                       f"where run_id = '{run_id}'{it}").fetchall()[0]
    return int(g), int(s)


def evaluate_here(cfg: ExperimentConfig, store_root: Path, n_problems: int, n_samples: int) -> dict[str, float]:
    """Evaluate the embedded policy once (greedy + n_samples per problem), store the rows under run 'bench',
    and return the timings: greedy and sampled seconds, and the tokens of each."""
    from grpo_core.pipeline.evaluate import evaluate
    from grpo_core.pipeline.stages import load_data, policy_dir
    from grpo_core.policy.load import load_policy
    from grpo_core.rollout import make_engine
    from grpo_core.store import Store
    from grpo_core.store.records import RunKey

    path = policy_dir(cfg)
    _, test = load_data(cfg)
    model, tok = load_policy(path)
    engine = make_engine(cfg.rollout, model, tok, seed=cfg.grpo.seed)
    key = RunKey("bench", None, 0, 0)
    problems = test.problems[:n_problems]
    t0 = time.perf_counter()
    greedy = evaluate(engine, problems, cfg.task.prompt_template, cfg.eval.model_copy(update={"n_problems": n_problems}),
                      cfg.rollout, key, with_samples=False)
    t1 = time.perf_counter()
    eval_cfg = cfg.eval.model_copy(update={"n_problems": n_problems, "n_samples": n_samples, "k_max": 1})
    full = evaluate(engine, problems, cfg.task.prompt_template, eval_cfg, cfg.rollout, key)
    t2 = time.perf_counter()
    rows = greedy.rows + [r for r in full.rows if r["decoding"] == "sample"]
    Store(store_root).write_rollouts(rows, run_id="bench", iteration=0, step=0, split="eval")
    # `full` decoded greedy again before sampling: its sampling time is the rest
    sample_s = (t2 - t1) - (t1 - t0)
    return {"greedy_s": t1 - t0, "sample_s": max(sample_s, 0.0),
            "greedy_tokens": sum(r["n_tokens"] for r in greedy.rows),
            "sample_tokens": sum(r["n_tokens"] for r in rows if r["decoding"] == "sample"),
            "problems": len(problems)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a stored run: widths of its before-vs-after intervals (no evaluation here)")
    parser.add_argument("--store", type=Path, default=Path("runs/store"), help="the store of --run")
    parser.add_argument("--settings", help=f"PROBLEMSxSAMPLES list (default {DEFAULT_SETTINGS})")
    parser.add_argument("--k", type=int, default=16, help="K of Pass@K and Maj@K (capped at n)")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: settings {QUICK_SETTINGS}, 200 resamples")
    parser.add_argument("overrides", nargs="*", help="config overrides, section.field=value")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings or (QUICK_SETTINGS if args.quick else DEFAULT_SETTINGS))
    cfg = load_config(None, [*(["report.resamples=200"] if args.quick else []), *args.overrides])
    stats = cfg.report
    print(f"load average {os.getloadavg()[0]:.2f}; {stats.resamples} resamples, seed {stats.seed}, "
          f"level {stats.level:.0%}")

    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            root, run_id, timing = args.store, args.run, None
        else:
            n_max = 2 * max(n for _, n in settings)
            p_max = min(max(p for p, _ in settings), cfg.task.synthetic.n_test)
            root, run_id = Path(tmp), "bench"
            t0 = time.perf_counter()
            timing = evaluate_here(cfg, root, p_max, n_max)
            print(f"evaluated {timing['problems']} problems: greedy {timing['greedy_s']:.1f} s "
                  f"({timing['greedy_tokens']} tokens), {n_max} samples each {timing['sample_s']:.1f} s "
                  f"({timing['sample_tokens']} tokens); {time.perf_counter() - t0:.0f} s with the policy load")
        con = connect(root, read_only=args.run is not None)
        try:
            evals = con.execute("select iteration, max(step) from _rollouts_files where run_id = ? and split = 'eval' "
                                "group by 1 order by 1", [run_id]).fetchall()
            if not evals:
                raise SystemExit(f"no evaluation rollouts of run {run_id!r} in {root}")
            (it_a, step_a), (it_b, step_b) = (evals[0], evals[-1]) if args.run else ((0, 0), (1, 0))
            if args.run and len(evals) < 2:
                raise SystemExit(f"run {run_id!r} has no evaluation after RL yet")
            stored_p, stored_n = con.execute(
                "select count(distinct problem_id), min(n) from (select problem_id, count(*) as n from _rollouts_files "
                "where run_id = ? and split = 'eval' and decoding = 'sample' and iteration = ? group by 1)",
                [run_id, it_a]).fetchall()[0]
            header = (f"{'setting':>9} {'K':>3} | half-width of the 95% CI, points: {'greedy':>7} {'Pass@K':>7} "
                      f"{'Maj@K 1':>8} {'Maj@K 8':>8} | cost: {'seconds':>8} {'tokens':>9}")
            print(("before vs after, run " + run_id if args.run else "A/A: samples [0, n) vs [n, 2n) of one policy")
                  + f"; Maj@K over 1 and over 8 partitions; {stored_p} problems stored")
            print(header)
            for p, n in settings:
                needed_n = n if args.run else 2 * n
                if needed_n > stored_n:
                    print(f"{p:>5}x{n:<3} skipped: needs {needed_n} samples per problem, {stored_n} stored")
                    continue
                measured = min(p, stored_p)
                k = min(args.k, n)
                subsample_view(con, run_id, measured, n, aa=not args.run)
                w = half_widths(scores(con, k, it_a, step_a), scores(con, k, it_b, step_b), stats,
                                greedy_alone=not args.run)
                scale = math.sqrt(measured / p)  # the interval narrows as 1/sqrt(problems)
                mark = "*" if measured < p else " "
                g_tok, s_tok = sampled_tokens(con, run_id, n, None if args.run else 0)
                g_tok, s_tok = g_tok * p / measured, s_tok * p / measured
                if timing:
                    secs = (timing["greedy_s"] * g_tok / max(timing["greedy_tokens"], 1)
                            + timing["sample_s"] * s_tok / max(timing["sample_tokens"], 1))
                    cost = f"{secs:8.1f} {g_tok + s_tok:9.0f}"
                else:
                    cost = f"{'':>8} {(g_tok + s_tok) / 2:9.0f}"  # one evaluation of the two
                print(f"{p:>5}x{n:<3}{mark}{k:>3} | {'':35}{w['greedy'] * scale:7.2f} {w['pass'] * scale:7.2f} "
                      f"{w['maj_1'] * scale:8.2f} {w['maj_8'] * scale:8.2f} | {'':6}{cost}")
        finally:
            con.close()
    print("* extrapolated from fewer problems by sqrt(P_measured / P)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
