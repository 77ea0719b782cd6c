"""Benchmark of the store: write throughput, and the analysis queries over >= 10M rollout rows.

    .venv/bin/python bench/bench_store.py              # 1,000 files x 10k rows under a temp dir, deleted after
    .venv/bin/python bench/bench_store.py --keep --root /tmp/store10m

Builds a synthetic store shaped like iterative GRPO sweeps: 10 runs (trials), each with train steps
(G=16 samples for each of 625 questions) and, at the same steps, evaluations (64 samples + 1 greedy
completion for each of 154 problems). Half the files are train and half eval by default. Writer
processes (parallel sweep trials) write to one root at once through grpo_core.store.Store; then one
catalog connection times the queries. Target: each query under 2 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.store import Store  # noqa: E402

N_RUNS = 10
GROUP_SIZE = 16  # G, train samples per question
EVAL_SAMPLES = 64  # samples per eval problem (Pass@64, Maj@64)
N_PROBLEMS = 7473  # GSM8K train size
QUERIES = {
    "pass_at_k(1)": "select * from pass_at_k(1)",
    "pass_at_k(16)": "select * from pass_at_k(16)",
    "pass_at_k(64)": "select * from pass_at_k(64)",
    "maj_at_k(1)": "select * from maj_at_k(1)",
    "maj_at_k(4)": "select * from maj_at_k(4)",
    "maj_at_k(16)": "select * from maj_at_k(16)",
    "maj_at_k(64)": "select * from maj_at_k(64)",
    "curves (per-step curve)": "select * from curves",
    "evals": "select * from evals",
    "full scan: reward by run, split": "select run_id, split, count(*), avg(reward), avg(n_tokens) from rollouts group by all",
}


class Pools:
    """Text pools the synthetic columns draw from (built once per writer process)."""

    def __init__(self, rng: np.random.Generator) -> None:
        words = np.array("let the number of apples be x then twice that plus seven equals so we get total".split())
        def sentences(n: int, length: int) -> pa.Array:
            return pa.array([" ".join(rng.choice(words, length)) for _ in range(n)])
        self.problem_ids = pa.array([f"gsm8k-train-{i:05d}" for i in range(N_PROBLEMS)])
        self.prompts = sentences(N_PROBLEMS, 40)
        self.golds = pa.array([str(int(g)) for g in rng.integers(0, 200, N_PROBLEMS)])
        self.completions = sentences(4000, 60)


def make_rows(rng: np.random.Generator, pools: Pools, *, split: str, rows_per_file: int, process: bool) -> pa.Table:
    """One step's rollouts: every column but those the Store fills (run_id, iteration, step, split, created_at)."""
    if split == "train":
        n_groups, per_group = rows_per_file // GROUP_SIZE, GROUP_SIZE
    else:
        n_groups, per_group = -(-rows_per_file // (EVAL_SAMPLES + 1)), EVAL_SAMPLES + 1  # last one is greedy
    n = n_groups * per_group
    problem = np.repeat(rng.choice(N_PROBLEMS, n_groups, replace=False), per_group)
    group_index = np.repeat(np.arange(n_groups, dtype=np.int32), per_group)
    sample_index = np.tile(np.arange(per_group, dtype=np.int32), n_groups)
    greedy = (sample_index == per_group - 1) if split == "eval" else np.zeros(n, bool)
    sample_index = np.where(greedy, 0, sample_index).astype(np.int32)
    gold_int = pc.cast(pools.golds.take(pa.array(problem)), pa.int64()).to_numpy()
    difficulty = np.repeat(rng.uniform(0.05, 0.95, n_groups), per_group)
    correct = rng.random(n) < difficulty
    wrong = gold_int + rng.integers(1, 4, n)  # a few distinct wrong answers: majority votes have ties
    answer_int = np.where(correct, gold_int, wrong)
    parsed = correct | (rng.random(n) > 0.08)
    answer = pc.if_else(pa.array(parsed), pc.cast(pa.array(answer_int), pa.string()), pa.nulls(n, pa.string()))
    reward = correct.astype(np.float64)
    grouped = reward.reshape(n_groups, per_group)
    advantage = ((grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-4)).ravel()
    n_tokens = rng.integers(40, 513, n).astype(np.int32)
    if process:  # PRM scores, 2..8 steps per completion
        lengths = rng.integers(2, 9, n)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        step_rewards = pa.ListArray.from_arrays(offsets, pa.array(rng.random(int(lengths.sum()))))
    else:
        step_rewards = pa.nulls(n, pa.list_(pa.float64()))
    suffix = pc.cast(pa.array(rng.integers(0, 10**9, n)), pa.string())
    completion = pc.binary_join_element_wise(pools.completions.take(pa.array(rng.integers(0, 4000, n))), suffix, " ")
    is_train = split == "train"
    return pa.table(
        {
            "decoding": pc.if_else(pa.array(greedy), "greedy", "sample"),
            "problem_id": pools.problem_ids.take(pa.array(problem)),
            "group_index": group_index,
            "sample_index": sample_index,
            "prompt": pools.prompts.take(pa.array(problem)),
            "completion": completion,
            "gold": pools.golds.take(pa.array(problem)),
            "answer": answer,
            "answer_norm": answer,
            "correct": correct,
            "reward": reward,
            "step_rewards": step_rewards,
            "advantage": pa.array(advantage) if is_train else pa.nulls(n, pa.float64()),
            "n_tokens": n_tokens,
            "finished": n_tokens < 512,
            "kl": pa.array(rng.exponential(0.02, n)) if is_train else pa.nulls(n, pa.float64()),
            "logprob_sum": -n_tokens * rng.uniform(0.1, 0.8, n),
            "engine": pa.array(["vllm"] * n),
            "reward_model": pa.array(["prm-v1" if process else None] * n, pa.string()),
            "entropy": pa.array(rng.uniform(0.2, 2.0, n)) if is_train else pa.nulls(n, pa.float64()),
            "draw": pa.array(np.zeros(n, dtype=np.int32)),
            "filtered": pa.array(np.zeros(n, dtype=bool)),
        }
    )


def write_runs(root: str, run_numbers: list[int], files_per_run: int, rows_per_file: int, eval_fraction: float) -> tuple[int, float, float]:
    """One writer process: its runs' files. Returns (rows, seconds generating, seconds in Store writes)."""
    rng = np.random.default_rng(run_numbers[0])
    pools = Pools(rng)
    store = Store(Path(root))
    rows = 0
    gen_s = write_s = 0.0
    n_eval = round(files_per_run * eval_fraction)
    for r in run_numbers:
        run_id = f"bench-{r:02d}"
        store.write_run(run_id, trial_id=str(r), name=run_id, config={"beta": 0.04, "G": GROUP_SIZE})
        plan = [("train", i) for i in range(files_per_run - n_eval)] + [("eval", i) for i in range(n_eval)]
        for split, i in plan:
            t0 = time.perf_counter()
            table = make_rows(rng, pools, split=split, rows_per_file=rows_per_file, process=r % 2 == 1)
            t1 = time.perf_counter()
            store.write_rollouts(table, run_id=run_id, iteration=i // 25, step=i, split=split)
            t2 = time.perf_counter()
            gen_s += t1 - t0
            write_s += t2 - t1
            rows += table.num_rows
            store.write_step_metrics({"train/kl": 0.01, "rollout/reward_mean": 0.5}, run_id=run_id,
                                     trial_id=str(r), iteration=i // 25, step=i)
        store.write_run(run_id, trial_id=str(r), name=run_id, config={"beta": 0.04, "G": GROUP_SIZE}, status="finished")
    return rows, gen_s, write_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000, help="rollout files in all (split over 10 runs)")
    parser.add_argument("--rows-per-file", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=2, help="writer processes writing at once")
    parser.add_argument("--eval-fraction", type=float, default=0.5, help="share of files that are eval steps")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each query; the best and the first are shown")
    parser.add_argument("--root", type=Path, help="store root (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--reuse", action="store_true", help="skip writing; time queries over an existing --root")
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="grpo-store-bench-"))
    print("load average before: {:.1f} {:.1f} {:.1f} (other processes share the cores)".format(*os.getloadavg()))
    try:
        if not args.reuse:
            files_per_run = args.files // N_RUNS
            shards = [list(range(N_RUNS))[w :: args.writers] for w in range(args.writers)]
            t0 = time.perf_counter()
            with mp.get_context("spawn").Pool(args.writers) as pool:
                results = pool.starmap(
                    write_runs, [(str(root), s, files_per_run, args.rows_per_file, args.eval_fraction) for s in shards]
                )
            wall = time.perf_counter() - t0
            rows = sum(r for r, _, _ in results)
            write_s = sum(w for _, _, w in results)
            gen_s = sum(g for _, g, _ in results)
            size = sum(f.stat().st_size for f in (root / "rollouts").rglob("*.parquet"))
            print(f"store: {root}")
            print(f"wrote {rows:,} rollout rows in {N_RUNS * files_per_run} files ({size / 2**30:.2f} GiB) "
                  f"with {args.writers} writer processes in {wall:.1f} s wall")
            print(f"  write throughput: {rows / write_s:,.0f} rows/s per writer (validate + Parquet/zstd + fsync + rename), "
                  f"{args.writers * rows / write_s:,.0f} rows/s for {args.writers} writers; "
                  f"{rows / wall:,.0f} rows/s end to end incl. synthetic data generation ({gen_s:.1f} s of it)")

        from analysis.catalog import connect, query  # noqa: PLC0415  (after the writers: they must not need it)

        t0 = time.perf_counter()
        con = connect(root)
        print(f"connect (define views, read metric names): {time.perf_counter() - t0:.2f} s")
        counts = con.sql("select split, decoding, count(*) from rollouts group by all order by all").fetchall()
        print("rows: " + ", ".join(f"{s}/{d} {n:,}" for s, d, n in counts))
        print(f"{'query':40s} {'first s':>8s} {'best s':>8s} {'rows out':>9s}")
        for name, sql in QUERIES.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = con.sql(sql).fetchall()
                times.append(time.perf_counter() - t0)
            flag = "" if min(times) < 2.0 else "  (over the 2 s target)"
            print(f"{name:40s} {times[0]:8.2f} {min(times):8.2f} {len(out):9,d}{flag}")
        con.close()
        t0 = time.perf_counter()
        query(root, "select * from pass_at_k(16)")
        print(f"query() with a fresh read-only connection, pass_at_k(16): {time.perf_counter() - t0:.2f} s")
        print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    finally:
        if args.keep or args.reuse:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
