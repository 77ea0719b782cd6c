"""The SQL in analysis/sql/ on small hand-made stores, checked against hand counts and plain Python."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

import duckdb
import pytest

from analysis.catalog import DERIVED, connect, load_sql, query
from grpo_core.store import PRM_LABELS, ROLLOUTS, TABLES, Store


def row(**overrides) -> dict:
    """One rollout with the columns a caller gives (the Store fills run_id, iteration, step, split)."""
    r = {
        "decoding": "sample",
        "problem_id": "p",
        "group_index": 0,
        "sample_index": 0,
        "prompt": "q",
        "completion": "c",
        "gold": "4",
        "answer": None,
        "answer_norm": None,
        "correct": False,
        "reward": 0.0,
        "step_rewards": None,
        "advantage": None,
        "n_tokens": 10,
        "finished": True,
        "kl": None,
        "logprob_sum": -1.0,
        "engine": "hf",
        "reward_model": None,
        "entropy": None,
        "draw": 0,
        "filtered": False,
    }
    r = {c: v for c, v in r.items() if c in ROLLOUTS.schema.names}  # the columns this store version has
    r.update(overrides)
    return r


def eval_samples(problem_id: str, answers: list[str | None], group_index: int = 0, gold: str = "4") -> list[dict]:
    """Sampled eval completions of one problem; an answer is correct when it equals gold."""
    return [
        row(problem_id=problem_id, group_index=group_index, sample_index=i, answer=a, answer_norm=a,
            correct=a == gold, gold=gold)
        for i, a in enumerate(answers)
    ]


# Hand-made evaluation: gold is "4"; None = no answer could be parsed.
HAND = {
    "p1": ["4", "4", "5", "6"],        # c=2; k=2 vote groups [4,4] -> 1, [5,6] tie of wrong -> 0
    "p2": ["7", "4", "7", "4"],        # c=2; k=4: 7 and 4 tie -> 0.5
    "p3": [None, None, "4", None],     # c=1; k=4: only "4" votes -> 1; k=2: [-,-] -> 0, [4,-] -> 1
    "p4": [None, None, None, None],    # c=0; nobody votes -> 0
    "p5": ["4", "5", "5", "4", "4"],   # n=5, c=3; k=2: [4,5] .5, [5,4] .5, last sample left out
}
# Expected per problem, worked out by hand from the definitions in the SQL files.
HAND_PASS = {
    1: {"p1": 0.5, "p2": 0.5, "p3": 0.25, "p4": 0.0, "p5": 0.6},
    2: {"p1": 1 - 1 / 6, "p2": 1 - 1 / 6, "p3": 1 - 3 / 6, "p4": 0.0, "p5": 1 - 1 / 10},
    4: {"p1": 1.0, "p2": 1.0, "p3": 1.0, "p4": 0.0, "p5": 1.0},
}
HAND_MAJ = {
    1: {"p1": 0.5, "p2": 0.5, "p3": 0.25, "p4": 0.0, "p5": 0.6},
    2: {"p1": 0.5, "p2": 0.5, "p3": 0.5, "p4": 0.0, "p5": 0.5},
    3: {"p1": 1.0, "p2": 0.0, "p3": 1.0, "p4": 0.0, "p5": 0.0},  # p5 [4,5,5] -> 5
    4: {"p1": 1.0, "p2": 0.5, "p3": 1.0, "p4": 0.0, "p5": 0.5},  # p5 [4,5,5,4] tie
}
# The same with the default 8 partitions (maj_at_k_per_problem.sql), worked out by hand. n = 4: the
# multipliers are [1], so partition r shifts the labels by r: k = 2 cuts {0,1},{2,3} (r even) and
# {3,0},{1,2} (r odd); k = 3 leaves out one sample per partition (each of the 4 in turn). p5 (n = 5,
# multipliers [1, 2]) at k = 2, groups per r = 0..7: .5 .5 | 1 .5 | 1 0 | .5 .5 | 1 .5 | .5 1 | .5 1 | .5 .5.
HAND_MAJ_8 = {
    1: HAND_MAJ[1],
    2: {"p1": 0.5, "p2": 0.5, "p3": 0.5, "p4": 0.0, "p5": 10 / 16},
    3: {"p1": (1 + 1 + 1 / 3 + 1 / 3) / 4},  # [4,4,5] [4,4,6] -> 1; [4,5,6] twice -> three-way tie 1/3
}


@pytest.fixture
def hand_store(tmp_path) -> Path:
    """HAND as one evaluation (run r, iteration 0, step 10), plus rows the macros must ignore."""
    store = Store(tmp_path)
    store.write_run("r", trial_id=None, name="hand", config={})
    samples = [r for i, (p, answers) in enumerate(HAND.items()) for r in eval_samples(p, answers, group_index=i)]
    random.Random(0).shuffle(samples)  # file order must not matter, only sample_index
    greedy = [row(problem_id=p, group_index=i, decoding="greedy", answer="9", answer_norm="9") for i, p in enumerate(HAND)]
    store.write_rollouts(samples + greedy, run_id="r", iteration=0, step=10, split="eval")
    train = [row(problem_id="p1", sample_index=i, answer="4", answer_norm="4", correct=True) for i in range(8)]
    store.write_rollouts(train, run_id="r", iteration=0, step=10, split="train")
    return tmp_path


# -- independent Python references ---------------------------------------------------------------
def pass_at_k_reference(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def vote_score(chunk: list[tuple[int, str | None, bool]]) -> float:
    """One vote group's score: correctness of the most-voted answer, ties scored by expectation."""
    votes = Counter(a for _, a, _ in chunk if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    return mean(mean(float(c) for _, a2, c in chunk if a2 == a) for a in tied)


def maj_at_k_reference(samples: list[tuple[int, str | None, bool]], k: int, partitions: int = 1) -> float:
    """samples: (sample_index 0..n-1, answer_norm, correct). Partition r relabels index i as (a i + b) mod n,
    a the (r mod |A|)-th integer in 1..max(1, n // 2) coprime to n, b = r // |A|; disjoint vote groups of
    k relabelled indices in order; the mean over every complete group of every partition."""
    n = len(samples)
    mults = [a for a in range(1, max(1, n // 2) + 1) if math.gcd(a, n) == 1]
    scores = []
    for r in range(partitions if k < n else 1):
        a, b = mults[r % len(mults)], r // len(mults)
        relabelled = sorted(((a * i + b) % n, answer, correct) for i, answer, correct in samples)
        scores += [vote_score(relabelled[g * k : (g + 1) * k]) for g in range(n // k)]
    return mean(scores)


def per_problem(con, macro: str, k: int, args: str = "") -> dict[str, float]:
    sql = f"select problem_id, {macro} from {macro}_per_problem($k{args})"
    return dict(con.sql(sql, params={"k": k}).fetchall())


# -- empty store --------------------------------------------------------------------------------
def test_every_view_and_macro_works_on_an_empty_store(tmp_path):
    con = connect(tmp_path / "store")
    assert (tmp_path / "store" / "catalog.duckdb").exists()
    expected_columns = {
        "runs": ["run_id", "trial_id", "name", "config_json", "config", "git_sha", "code_fingerprint", "versions",
                 "status", "created_at", "updated_at"],
        "rollouts": ROLLOUTS.schema.names,
        "step_metrics": ["run_id", "trial_id", "iteration", "step", "metric", "namespace", "value", "created_at"],
        "prm_labels": [*PRM_LABELS.schema.names[:-1], "is_last_step", "created_at"],
        "prm_metrics": ["run_id", "trial_id", "iteration", "epoch", "metric", "namespace", "value", "created_at"],
        "sweeps": ["sweep", "storage", "sampler", "pruner", "direction", "objective", "space", "config", "status",
                   "n_trials", "best_trial", "best_value", "report_path", "created_at", "updated_at"],
        "trials": ["sweep", "trial_number", "trial_id", "run_id", "state", "params", "value", "intermediate",
                   "wall_s", "error", "retry_of", "created_at", "updated_at"],
        "experiment_runs": ["experiment", "arm", "seed", "run_id", "overrides", "created_at", "updated_at"],
    }
    assert expected_columns.keys() == TABLES.keys()
    for name, columns in expected_columns.items():
        assert [c for (c,) in con.sql(f"select column_name from (describe {name})").fetchall()] == columns
        assert con.sql(f"select count(*) from {name}").fetchall() == [(0,)]
    rollout_columns = con.sql("select column_name, column_type from (describe rollouts)").fetchall()
    assert [c for c, _ in rollout_columns] == ROLLOUTS.schema.names
    assert dict(rollout_columns)["step_rewards"] == "DOUBLE[]"
    assert dict(rollout_columns)["created_at"] == "TIMESTAMP WITH TIME ZONE"
    wide = con.sql("select column_name from (describe step_metrics_wide)").fetchall()
    assert wide == [("run_id",), ("trial_id",), ("iteration",), ("step",)]
    views = [n for n in DERIVED[1:] if "create or replace view" in load_sql(n)]
    macros = [n for n in DERIVED if ") as table" in load_sql(n)]  # table macros
    assert {"evals", "curves", "run_info", "run_curves", "run_evals"} <= set(views)
    assert len(views) + len(macros) == len(DERIVED) - 2  # all but step_metrics_wide (above) and global_step
    assert con.sql("select global_step(0, 0, 60), global_step(1, 5, 60), global_step(2, 5, 60)").fetchall() == [
        (0, 5, 65)]
    for name in views:
        assert con.sql(f"select count(*) from {name}").fetchall() == [(0,)], name
    for macro in macros:
        call = {"outcome_vs_process": f"{macro}()",  # its one parameter has a default
                "paired_scores": f"{macro}(4, 'a', 0, 'b', 1)"}.get(macro, f"{macro}(4)")
        assert con.sql(f"select * from {call}").fetchall() == [], macro
    con.close()


def test_views_pick_up_files_written_after_an_empty_connect(tmp_path):
    connect(tmp_path).close()
    Store(tmp_path).write_rollouts([row()], run_id="r", iteration=0, step=0, split="train")
    assert query(tmp_path, "select count(*) as n from rollouts").column("n").to_pylist() == [1]
    con = connect(tmp_path)
    assert con.sql("select count(*) from rollouts").fetchall() == [(1,)]
    con.close()


def test_load_sql_reads_one_definition_by_name():
    assert "create or replace macro pass_at_k(k) as table" in load_sql("pass_at_k")
    with pytest.raises(FileNotFoundError, match="no SQL definition 'nope'"):
        load_sql("nope")
    with pytest.raises(ValueError):
        load_sql("../catalog")


# -- the table specs: one path for writer and reader, docs visible from SQL ----------------------------
def write_one_of_each(store: Store) -> dict[str, list[Path]]:
    """One write to every store table; the paths the writer returned, by table name."""
    trial = {"sweep": "s1", "trial_number": 3, "trial_id": "s1-3", "run_id": "r", "state": "COMPLETE",
             "params_json": "{}", "value": 0.5, "intermediate_json": "{}", "wall_s": 1.0, "error": None,
             "retry_of": None}
    sweep = {"sweep": "s1", "storage": "j.log", "sampler": "tpe", "pruner": "none", "direction": "maximize",
             "objective": "maj@16", "space_json": "{}", "config_json": "{}", "status": "running", "n_trials": 1,
             "best_trial": 3, "best_value": 0.5, "report_path": None}
    label = {"problem_id": "p", "solution_index": 0, "step_index": 0, "step_text": "s", "prompt": "q",
             "hard": True, "soft": 1.0, "exact": None, "n_completions": 0, "completions_correct": 0}
    return {
        "runs": [store.write_run("r", trial_id="s1-3", name="r", config={}, code_fingerprint="fp")],
        "rollouts": [store.write_rollouts([row()], run_id="r", iteration=1, step=2, split=split)
                     for split in ("train", "eval")],
        "step_metrics": [store.write_step_metrics({"train/kl": 0.5}, run_id="r", trial_id="s1-3", iteration=1, step=2)],
        "prm_labels": [store.write_prm_labels([label], run_id="r", iteration=1)],
        "prm_metrics": [store.write_prm_metrics({"prm/x": 0.5}, run_id="r", iteration=1, epoch=2, model=m)
                        for m in ("prm", "orm")],
        "sweeps": [store.write_sweep(sweep)],
        "trials": [store.write_trial(trial)],
        "experiment_runs": [store.write_experiment_run({"experiment": "e", "arm": "os", "seed": 0, "run_id": "r",
                                                        "overrides_json": "{}"})],
    }


def test_every_table_is_written_where_its_view_reads(tmp_path):
    paths = write_one_of_each(Store(tmp_path))
    assert paths.keys() == TABLES.keys()
    (tmp_path / "rollouts" / "r" / "notes.parquet").write_bytes(b"not the writer's")  # outside every pattern
    con = connect(tmp_path)
    for name, spec in TABLES.items():
        assert sorted(tmp_path.glob(spec.glob)) == sorted(paths[name]), name
        assert [p.relative_to(tmp_path).parts[0] for p in paths[name]] == [name] * len(paths[name])
        assert con.sql(f"select count(*) from {name}").fetchall() == [(len(paths[name]),)], name
    assert con.sql("select trial_id, code_fingerprint from runs").fetchall() == [("s1-3", "fp")]
    for name in ("rollouts", "step_metrics", "prm_labels", "prm_metrics"):  # the run's trial_id everywhere
        assert con.sql(f"select distinct run_id, trial_id from {name}").fetchall() == [("r", "s1-3")], name
    assert con.sql("select trial_id, run_id, value from trials").fetchall() == [("s1-3", "r", 0.5)]
    con.close()


def test_each_spec_documents_exactly_its_columns_one_line_each():
    for spec in TABLES.values():
        assert [c.name for c in spec.columns] == spec.schema.names, spec.name
        for text in [spec.doc, *(c.doc for c in spec.columns)]:
            assert text.strip() == text and text and "\n" not in text, spec.name
        assert spec.glob.endswith(".parquet") and "{" not in spec.glob


@pytest.mark.parametrize("read_only", [False, True])
def test_docs_are_comments_visible_from_sql(tmp_path, read_only):
    connect(tmp_path).close()  # with read_only the definitions are temporary, over the stored ones
    con = connect(tmp_path, read_only=read_only)
    database = "temp" if read_only else "catalog"
    views = dict(con.sql("select view_name, comment from duckdb_views() where database_name = $db",
                         params={"db": database}).fetchall())
    comments = {(t, c): doc for t, c, doc in con.sql(
        "select table_name, column_name, comment from duckdb_columns() where database_name = $db",
        params={"db": database}).fetchall()}
    for name, spec in TABLES.items():
        assert views[name] == spec.doc
        shown = [c for (t, c) in comments if t == name]
        for column in spec.columns:
            if column.name in shown:
                assert comments[(name, column.name)] == column.doc, (name, column.name)
        assert all(comments[(name, c)] for c in shown), name  # derived columns: commented by their .sql
    assert comments[("rollouts", "kl")] == "mean per-token k3 estimate of KL(policy || reference); null when not computed"
    assert "versions->>'$.torch'" in comments[("runs", "versions")]
    con.close()


# -- Pass@K and Maj@K: hand counts ----------------------------------------------------------------
@pytest.mark.parametrize("k", sorted(HAND_PASS))
def test_pass_at_k_hand_counts(hand_store, k):
    con = connect(hand_store)
    assert per_problem(con, "pass_at_k", k) == pytest.approx(HAND_PASS[k], abs=1e-12)
    agg = con.sql("select n_problems, n_min, n_max, pass_at_k from pass_at_k($k)", params={"k": k}).fetchall()
    assert agg == [(5, 4, 5, pytest.approx(mean(HAND_PASS[k].values()), abs=1e-12))]
    con.close()


@pytest.mark.parametrize("k", sorted(HAND_MAJ))
def test_maj_at_k_hand_counts_with_ties_and_null_answers(hand_store, k):
    con = connect(hand_store)
    assert per_problem(con, "maj_at_k", k, ", partitions := 1") == pytest.approx(HAND_MAJ[k], abs=1e-12)
    agg = con.sql("select k, n_problems, maj_at_k from maj_at_k($k)", params={"k": k}).fetchall()
    expected = mean(maj_at_k_reference([(i, a, a == "4") for i, a in enumerate(answers)], k, partitions=8)
                    for answers in HAND.values())
    assert agg == [(k, 5, pytest.approx(expected, abs=1e-12))]
    con.close()


@pytest.mark.parametrize("k", sorted(HAND_MAJ_8))
def test_maj_at_k_over_partitions_hand_counts(hand_store, k):
    con = connect(hand_store)
    got = per_problem(con, "maj_at_k", k)  # the default: 8 partitions
    assert {p: got[p] for p in HAND_MAJ_8[k]} == pytest.approx(HAND_MAJ_8[k], abs=1e-12)
    groups = dict(con.sql("select problem_id, n_vote_groups from maj_at_k_per_problem(2)").fetchall())
    assert groups == {"p1": 16, "p2": 16, "p3": 16, "p4": 16, "p5": 16}  # floor(n / 2) groups x 8 partitions
    at_n = dict(con.sql("select problem_id, n_vote_groups from maj_at_k_per_problem(4)").fetchall())
    assert at_n == {"p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": 8}  # k = n: one partition is all there is
    with pytest.raises(duckdb.Error, match="partitions must be a positive integer, got 0"):
        con.sql("select * from maj_at_k_per_problem(2, partitions := 0)").fetchall()
    con.close()


def test_maj_at_k_over_partitions_is_unbiased_and_less_noisy(tmp_path):
    """I.i.d. samples whose true Maj@3 is known: each sample right with p = 0.6, else one of two wrong
    answers (0.2 each); the majority of 3 is right when >= 2 are right, or on a 1-1-1 three-way tie (1/3),
    P = 0.648 + 6 * 0.6 * 0.2 * 0.2 / 3 = 0.696. Both estimators centre on it; 8 partitions spread less."""
    rng = random.Random(5)
    rows = []
    for q in range(600):
        answers = [rng.choices(["4", "5", "6"], [0.6, 0.2, 0.2])[0] for _ in range(12)]
        rows += eval_samples(f"q{q}", answers)
    Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=0, split="eval")
    con = connect(tmp_path)
    truth = 0.6 ** 3 + 3 * 0.6 ** 2 * 0.4 + 6 * 0.6 * 0.2 * 0.2 / 3
    assert truth == pytest.approx(0.696)
    spread = {}
    for partitions in (1, 8):
        scores = [v for (v,) in con.sql("select maj_at_k from maj_at_k_per_problem(3, partitions := $r)",
                                        params={"r": partitions}).fetchall()]
        assert mean(scores) == pytest.approx(truth, abs=0.03)  # about 4 standard errors of the 1-partition mean
        spread[partitions] = sum((s - mean(scores)) ** 2 for s in scores) / len(scores)
    assert spread[8] < 0.8 * spread[1]
    con.close()


def test_hand_counts_agree_with_the_python_references():
    for k, expected in HAND_PASS.items():
        for p, answers in HAND.items():
            c = sum(a == "4" for a in answers)
            assert pass_at_k_reference(len(answers), c, k) == pytest.approx(expected[p])
    for k, expected in HAND_MAJ.items():
        for p, answers in HAND.items():
            samples = [(i, a, a == "4") for i, a in enumerate(answers)]
            assert maj_at_k_reference(samples, k) == pytest.approx(expected[p])


def test_maj_vote_groups_follow_sample_index_not_file_order(tmp_path):
    # sample_index order: 4 4 | 5 6  -> Maj@2 = 0.5.  Written in the order 4 5 4 6 (which would give 0).
    samples = eval_samples("p", ["4", "4", "5", "6"])
    Store(tmp_path).write_rollouts([samples[i] for i in (0, 2, 1, 3)], run_id="r", iteration=0, step=0, split="eval")
    got = query(tmp_path, "select maj_at_k from maj_at_k_per_problem(2, partitions := 1)").to_pylist()
    assert got == [{"maj_at_k": 0.5}]


@pytest.mark.parametrize("macro", ["pass_at_k", "maj_at_k", "pass_at_k_per_problem", "maj_at_k_per_problem"])
def test_k_larger_than_n_is_rejected(hand_store, macro):
    con = connect(hand_store)
    name = macro.removesuffix("_per_problem")
    with pytest.raises(duckdb.Error, match=rf"{name}: k=5 exceeds the n=4 sampled eval completions of problem p\d"):
        con.sql(f"select * from {macro}(5)").fetchall()
    with pytest.raises(duckdb.Error, match=rf"{name}: k must be a positive integer, got 0"):
        con.sql(f"select * from {macro}(0)").fetchall()
    con.close()


def test_maj_at_1_shortcut_matches_the_vote_of_single_samples(tmp_path):
    """maj_at_k(1) skips the vote (every sample is its own vote group); it must score like the vote:
    a sample judged correct whose answer did not parse (answer_norm null) cast no vote and scores 0."""
    rows = eval_samples("p", ["4", None, "5", "4", None])
    rows[1]["correct"] = True  # a verdict without a parsed answer: no vote, so 0 in Maj@1 (1 in Pass@1)
    Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=0, split="eval")
    samples = [(r["sample_index"], r["answer_norm"], r["correct"]) for r in rows]
    got = query(tmp_path, "select n, n_vote_groups, maj_at_k from maj_at_k_per_problem(1)").to_pylist()
    assert got == [{"n": 5, "n_vote_groups": 5, "maj_at_k": maj_at_k_reference(samples, 1)}]
    assert got[0]["maj_at_k"] == 2 / 5
    assert query(tmp_path, "select pass_at_k from pass_at_k(1)").to_pylist() == [{"pass_at_k": pytest.approx(3 / 5)}]


def test_k_equal_to_one_is_the_sample_accuracy(hand_store):
    con = connect(hand_store)
    sample_accuracy = con.sql("select sample_accuracy from evals").fetchall()[0][0]
    # per-sample accuracy averaged over problems (p5 has 5 samples, the others 4)
    per_problem_accuracy = mean(mean(a == "4" for a in answers) for answers in HAND.values())
    assert con.sql("select pass_at_k from pass_at_k(1)").fetchall()[0][0] == pytest.approx(per_problem_accuracy)
    assert con.sql("select maj_at_k from maj_at_k(1)").fetchall()[0][0] == pytest.approx(per_problem_accuracy)
    assert sample_accuracy == pytest.approx(8 / 21)  # pooled: 2 + 2 + 1 + 0 + 3 correct of 21
    con.close()


# -- Pass@K and Maj@K: a random store against the references --------------------------------------
def test_random_store_matches_python_references(tmp_path):
    rng = random.Random(1234)
    store = Store(tmp_path)
    store.write_run("a", trial_id=None, name="a", config={})
    store.write_run("b", trial_id="t7", name="b", config={})
    expected_samples: dict[tuple, list[tuple[int, str | None, bool]]] = defaultdict(list)
    for run_id in ("a", "b"):
        for iteration, step in ((0, 5), (1, 9)):
            rows = []
            for g in range(12):
                n = rng.choice([8, 9, 12])
                gold = str(rng.randint(0, 3))
                order = list(range(n))
                rng.shuffle(order)
                for s in order:
                    a = rng.choice([None, "0", "1", "2", "3"])  # small alphabet: plenty of ties
                    correct = a == gold
                    rows.append(row(problem_id=f"q{g}", group_index=g, sample_index=s, gold=gold,
                                    answer=a, answer_norm=a, correct=correct))
                    expected_samples[(run_id, iteration, step, f"q{g}")].append((s, a, correct))
            store.write_rollouts(rows, run_id=run_id, iteration=iteration, step=step, split="eval")
    con = connect(tmp_path)
    for k in (1, 2, 3, 5, 8):
        got_pass = {(r, i, s, p): v for r, i, s, p, v in con.sql(
            "select run_id, iteration, step, problem_id, pass_at_k from pass_at_k_per_problem($k)", params={"k": k}).fetchall()}
        got_maj = {(r, i, s, p): v for r, i, s, p, v in con.sql(
            "select run_id, iteration, step, problem_id, maj_at_k from maj_at_k_per_problem($k)", params={"k": k}).fetchall()}
        assert got_pass.keys() == got_maj.keys() == expected_samples.keys()
        for key, samples in expected_samples.items():
            c = sum(correct for _, _, correct in samples)
            assert got_pass[key] == pytest.approx(pass_at_k_reference(len(samples), c, k), abs=1e-12), (k, key)
            assert got_maj[key] == pytest.approx(maj_at_k_reference(samples, k, partitions=8), abs=1e-12), (k, key)
        agg = con.sql("select run_id, trial_id, iteration, step, n_problems, maj_at_k from maj_at_k($k) order by all",
                      params={"k": k}).fetchall()
        assert [a[:5] for a in agg] == [
            ("a", None, 0, 5, 12), ("a", None, 1, 9, 12), ("b", "t7", 0, 5, 12), ("b", "t7", 1, 9, 12)
        ]
        for run_id, _, iteration, step, _, value in agg:
            keys = [key for key in expected_samples if key[:3] == (run_id, iteration, step)]
            assert value == pytest.approx(mean(got_maj[key] for key in keys), abs=1e-12)
    with pytest.raises(duckdb.Error, match="exceeds the n=8"):
        con.sql("select * from pass_at_k(9)").fetchall()
    con.close()


# -- per-problem scores, paired -------------------------------------------------------------------
def two_evaluations(tmp_path) -> Path:
    """Run r: iteration 0 (step 0) and iteration 1 evaluated at steps 3 and 5; problems p1..p3 (p3 only
    in iteration 1, so it has no pair); greedy rows answer "4" (right) or "9"."""
    store = Store(tmp_path)
    plan = {  # (iteration, step) -> problem -> (greedy answer, sampled answers)
        (0, 0): {"p1": ("9", ["4", "5", "5", "5"]), "p2": ("4", ["4", "4", "6", "7"])},
        (1, 3): {"p1": ("9", ["5", "5", "5", "5"]), "p2": ("9", ["6", "6", "6", "6"])},
        (1, 5): {"p1": ("4", ["4", "4", "4", "5"]), "p2": ("4", ["4", "6", "6", "7"]), "p3": ("4", ["4"] * 4)},
    }
    for (iteration, step), problems in plan.items():
        rows = []
        for g, (p, (greedy, answers)) in enumerate(problems.items()):
            rows += eval_samples(p, answers, group_index=g)
            rows.append(row(problem_id=p, group_index=g, decoding="greedy", answer=greedy, answer_norm=greedy,
                            correct=greedy == "4"))
        store.write_rollouts(rows, run_id="r", iteration=iteration, step=step, split="eval")
    return tmp_path


def test_problem_scores_are_the_per_problem_macros_with_greedy(tmp_path):
    con = connect(two_evaluations(tmp_path))
    got = {(i, s, p): (g, pa, m) for i, s, p, g, pa, m in con.sql(
        "select iteration, step, problem_id, greedy_correct, pass_at_k, maj_at_k from problem_scores(2)").fetchall()}
    assert len(got) == 7
    assert got[(0, 0, "p1")] == (0.0, pytest.approx(pass_at_k_reference(4, 1, 2)), pytest.approx(
        maj_at_k_reference([(i, a, a == "4") for i, a in enumerate(["4", "5", "5", "5"])], 2, partitions=8)))
    assert got[(1, 5, "p3")] == (1.0, 1.0, 1.0)
    means = con.sql("select avg(greedy_correct), avg(pass_at_k), avg(maj_at_k) from problem_scores(2) "
                    "where iteration = 1 and step = 5").fetchall()[0]
    macro = con.sql("select pass_at_k, maj_at_k from eval_at_k(2) where iteration = 1 and step = 5").fetchall()[0]
    greedy = con.sql("select greedy_accuracy from evals where iteration = 1 and step = 5").fetchall()[0][0]
    assert means == pytest.approx((greedy, *macro))
    con.close()


def test_paired_scores_pair_the_last_evaluation_of_each_iteration(tmp_path):
    con = connect(two_evaluations(tmp_path))
    rel = con.sql("select * from paired_scores(4, 'r', 0, 'r', 1) order by problem_id")
    rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    assert [r["problem_id"] for r in rows] == ["p1", "p2"]  # p3 was not evaluated before: no pair
    assert {(r["step_a"], r["step_b"]) for r in rows} == {(0, 5)}  # step 5, not 3: the iteration's last
    # k = n = 4: one vote group. p1: [4,5,5,5] -> 0, then [4,4,4,5] -> 1; p2: [4,4,6,7] -> 1, [4,6,6,7] -> 0
    assert [(r["greedy_a"], r["greedy_b"], r["greedy_diff"]) for r in rows] == [(0.0, 1.0, 1.0), (1.0, 1.0, 0.0)]
    assert [(r["maj_a"], r["maj_b"], r["maj_diff"]) for r in rows] == [(0.0, 1.0, 1.0), (1.0, 0.0, -1.0)]
    assert [(r["pass_a"], r["pass_b"], r["pass_diff"]) for r in rows] == [(1.0, 1.0, 0.0), (1.0, 1.0, 0.0)]
    con.close()


def test_pass_at_k_is_stable_for_large_n(tmp_path):
    answers = ["4"] * 3 + ["5"] * 997  # n=1000, c=3: C(997, 64) / C(1000, 64) overflows a double naively
    Store(tmp_path).write_rollouts(eval_samples("p", answers), run_id="r", iteration=0, step=0, split="eval")
    got = query(tmp_path, "select pass_at_k from pass_at_k(64)").column(0)[0].as_py()
    assert got == pytest.approx(pass_at_k_reference(1000, 3, 64), rel=1e-12)


# -- evals, curves, step metrics ----------------------------------------------------------------
def test_evals_numbers(tmp_path):
    store = Store(tmp_path)
    rows = [
        row(problem_id="p1", decoding="greedy", answer="4", answer_norm="4", correct=True, n_tokens=10),
        row(problem_id="p2", decoding="greedy", answer="5", answer_norm="5", correct=False, n_tokens=20),
        row(problem_id="p3", decoding="greedy", answer=None, correct=False, n_tokens=30),
        *eval_samples("p1", ["4", "4", None, "3"]),
        *eval_samples("p2", ["4", "1", "2", None]),
        *eval_samples("p3", ["0", "1", "2", "3"]),
    ]
    store.write_rollouts(rows, run_id="r", iteration=1, step=20, split="eval")
    store.write_rollouts(eval_samples("p1", ["4", "4"]), run_id="r", iteration=2, step=40, split="eval")
    store.write_rollouts([row(answer="4", correct=True)] * 4, run_id="r", iteration=1, step=20, split="train")
    got = query(tmp_path, "select * from evals order by step").to_pylist()
    assert got[0] == {
        "run_id": "r", "trial_id": None, "iteration": 1, "step": 20,
        "n_problems": 3,
        "n_greedy": 3, "greedy_accuracy": pytest.approx(1 / 3),
        "n_sampled": 12, "sample_accuracy": pytest.approx(3 / 12),
        "wellformed_rate": pytest.approx(12 / 15),  # greedy 2 of 3, sampled 10 of 12
        "greedy_wellformed_rate": pytest.approx(2 / 3),
        "length_mean": pytest.approx((10 + 20 + 30 + 12 * 10) / 15),
    }
    assert (got[1]["step"], got[1]["n_problems"], got[1]["greedy_accuracy"], got[1]["sample_accuracy"]) == (40, 1, None, 1.0)


def test_curves_numbers(tmp_path):
    store = Store(tmp_path)
    rows = [  # group 0 rewards 1, 0 (mixed); group 1 rewards 1, 1 (zero std)
        row(group_index=0, sample_index=0, reward=1.0, correct=True, answer="4", kl=0.1, n_tokens=10),
        row(group_index=0, sample_index=1, reward=0.0, correct=False, answer=None, kl=0.3, n_tokens=30, finished=False),
        row(group_index=1, sample_index=0, reward=1.0, correct=True, answer="4", kl=None, n_tokens=20),
        row(group_index=1, sample_index=1, reward=1.0, correct=True, answer="4", kl=0.2, n_tokens=40),
    ]
    store.write_rollouts(rows, run_id="r", iteration=0, step=3, split="train")
    store.write_rollouts(eval_samples("p", ["4", "5"]), run_id="r", iteration=0, step=3, split="eval")
    (got,) = query(tmp_path, "select * from curves").to_pylist()
    assert got == {
        "run_id": "r", "trial_id": None, "iteration": 0, "step": 3,
        "n_rollouts": 4, "n_groups": 2,
        "reward_mean": pytest.approx(0.75), "reward_std": pytest.approx(math.sqrt(0.75 * 0.25)),
        "frac_reward_zero_std": pytest.approx(0.5), "accuracy": pytest.approx(0.75),
        "kl_mean": pytest.approx(0.2), "length_mean": pytest.approx(25.0),
        "truncated_rate": pytest.approx(0.25), "wellformed_rate": pytest.approx(0.75),
    }


def test_step_metrics_wide_has_one_column_per_metric(tmp_path):
    store = Store(tmp_path)
    store.write_step_metrics({"train/kl": 0.1, "rollout/reward_mean": 0.5}, run_id="r", trial_id=None, iteration=0, step=1)
    store.write_step_metrics({"train/kl": 0.2}, run_id="r", trial_id=None, iteration=0, step=2)
    con = connect(tmp_path)
    got = con.sql('select step, "train/kl", "rollout/reward_mean" from step_metrics_wide order by step').fetchall()
    assert got == [(1, 0.1, 0.5), (2, 0.2, None)]
    assert con.sql("select distinct namespace from step_metrics order by 1").fetchall() == [("rollout",), ("train",)]
    con.close()
    store.write_step_metrics({"eval/o'brien": 1.0}, run_id="r", trial_id=None, iteration=0, step=3)  # quoting
    got = query(tmp_path, "select \"eval/o'brien\" as v from step_metrics_wide where step = 3").to_pylist()
    assert got == [{"v": 1.0}]


def test_runs_view_exposes_config_as_json(tmp_path):
    Store(tmp_path).write_run("r", trial_id="t1", name="demo", config={"grpo": {"beta": 0.04}})
    got = query(tmp_path, "select trial_id, config->>'$.grpo.beta' as beta, versions->>'$.python' as py from runs")
    assert got.to_pylist() == [{"trial_id": "t1", "beta": "0.04", "py": sys.version.split()[0]}]


# -- concurrency with the catalog file ----------------------------------------------------------
def test_query_works_while_another_process_holds_the_catalog(hand_store):
    connect(hand_store).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(hand_store / 'catalog.duckdb')!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(hand_store / "catalog.duckdb"), read_only=True)
        got = query(hand_store, "select n_problems, maj_at_k from maj_at_k($k)", {"k": 2}).to_pylist()
        assert got == [{"n_problems": 5, "maj_at_k": pytest.approx(mean(HAND_MAJ_8[2].values()))}]
        con = connect(hand_store)  # the writable connect falls back too
        assert con.sql("select count(*) from rollouts where split = 'eval'").fetchall() == [(26,)]
        con.close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_query_works_while_this_process_holds_the_catalog_writable(hand_store):
    con = connect(hand_store)
    try:
        assert query(hand_store, "select count(*) as n from rollouts").column("n").to_pylist() == [34]
    finally:
        con.close()


def test_read_only_connect_redefines_views_over_current_files(tmp_path):
    connect(tmp_path).close()  # stored views: no files yet, so over the empty tables
    Store(tmp_path).write_rollouts([row()] * 3, run_id="r", iteration=0, step=0, split="train")
    con = connect(tmp_path, read_only=True)
    assert con.sql("select count(*) from rollouts").fetchall() == [(3,)]
    assert con.sql("select n_rollouts from curves").fetchall() == [(3,)]
    con.close()


# -- the duckdb CLI ---------------------------------------------------------------------------------
DUCKDB_CLI = Path(sys.executable).with_name("duckdb")  # from the pip package duckdb-cli (the dev extra)


def cli_rows(store: Path, sql: str) -> list[dict]:
    """`duckdb -init catalog.sql -json -c SQL` run in `store` by the real CLI binary, rows as dicts."""
    import json

    assert DUCKDB_CLI.exists(), "no duckdb CLI in the venv: pip install -e '.[dev]' (duckdb-cli)"
    result = subprocess.run([str(DUCKDB_CLI), "-init", "catalog.sql", "-json", "-c", sql], cwd=store,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    return json.loads(result.stdout or "[]")


def test_a_duckdb_cli_of_another_version_reads_the_store_through_catalog_sql(hand_store, tmp_path_factory):
    """The script written for the CLI defines every view and macro for a CLI whose DuckDB version cannot
    open catalog.duckdb, with paths relative to the store: a copy of the store answers the same."""
    import shutil

    from analysis.catalog import write_cli_script

    Store(hand_store).write_step_metrics({"train/kl": 0.25}, run_id="r", trial_id=None, iteration=1, step=1)
    query(hand_store, "select 1")  # catalog.duckdb, written by the Python package
    write_cli_script(hand_store)
    copy = tmp_path_factory.mktemp("copied") / "store"
    shutil.copytree(hand_store, copy)
    shutil.rmtree(hand_store)  # nothing may point back at the original
    for k in (1, 2, 4):
        rows = cli_rows(copy, f"select problem_id, maj_at_k from maj_at_k_per_problem({k}, partitions := 1) order by 1")
        assert {r["problem_id"]: r["maj_at_k"] for r in rows} == pytest.approx(HAND_MAJ[k])
        assert cli_rows(copy, f"select pass_at_k from pass_at_k({k})") == \
            [{"pass_at_k": pytest.approx(mean(HAND_PASS[k].values()))}]
    assert cli_rows(copy, 'select "train/kl" as kl from step_metrics_wide') == [{"kl": 0.25}]
    views = {r["view_name"] for r in cli_rows(copy, "select view_name from duckdb_views() where not internal")}
    assert set(TABLES) | {d for d in DERIVED if d in views} <= views and "run_curves" in views
    docs = cli_rows(copy, "select comment from duckdb_columns() where table_name = 'rollouts' "
                    "and column_name = 'reward'")
    assert docs == [{"comment": next(c.doc for c in ROLLOUTS.columns if c.name == "reward")}]
