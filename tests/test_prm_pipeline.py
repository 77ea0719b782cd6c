"""The reward-model steps of iterative RL: label policy samples, train, continue with replay."""

from __future__ import annotations

import pytest

from analysis.catalog import query
from grpo_core.data.synthetic import generate_splits
from grpo_core.store import Store
from prm.data import solutions_from_rows
from prm.model import RewardModel
from prm.pipeline import label_policy_samples, train_reward_model
from prm.train import replay_count

OVERRIDES = {"iterative": {"label_problems": 4}, "rollout": {"max_new_tokens": 16},
             "prm": {"samples_per_problem": 2, "n_completions": 2, "epochs": 1, "lr": 1e-3, "eval_fraction": 0.25}}


@pytest.fixture(scope="module")
def cfg(tiny_cfg):
    c = tiny_cfg.model_copy(deep=True)
    for section, values in OVERRIDES.items():
        for k, v in values.items():
            setattr(getattr(c, section), k, v)
    return c


def test_label_train_continue(cfg, tiny_policy_dir, tmp_path):
    train, _ = generate_splits(cfg.task.synthetic, cfg.task.seed)
    store = Store(tmp_path / "store")
    rows0 = label_policy_samples(cfg, tiny_policy_dir, train, store, "run", 0)
    stored = query(store.root, "from prm_labels order by solution_index, step_index").to_pylist()
    assert [(r["problem_id"], r["step_text"], r["hard"], r["soft"], r["exact"]) for r in stored] == [
        (r["problem_id"], r["step_text"], r["hard"], r["soft"], r["exact"]) for r in rows0]
    metrics = {r["metric"]: r["value"] for r in query(store.root, "from prm_metrics where epoch = 0").to_pylist()}
    assert metrics["prm/label_steps"] == len(rows0) and "prm/label_agreement" in metrics
    sols0 = solutions_from_rows(rows0)
    assert len({s.problem_id for s in sols0}) <= 4 and len(sols0) <= 8
    assert all(r["n_completions"] in (0, 2) for r in rows0)
    assert all(r["exact"] is not None for r in rows0)  # synthetic: exact labels recorded

    rm0, m0 = train_reward_model(cfg, tiny_policy_dir, rows0, [], tmp_path / "rm0")
    assert set(m0) == {1} and m0[1]["prm/replayed_solutions"] == 0
    assert RewardModel.load(rm0).version == "process:rm0"

    rows1 = [dict(r, iteration=1) for r in rows0]  # as if labelled again in iteration 1
    old = [dict(r, iteration=0) for r in rows0]
    rm1, m1 = train_reward_model(cfg, rm0, rows1, old, tmp_path / "rm1", eval_labels=rows0)
    assert m1[1]["prm/replayed_solutions"] == replay_count(len(sols0), cfg.prm.replay_fraction)
    assert m1[1]["prm/eval_steps"] == len(rows0)

    with pytest.raises(ValueError, match="holds a .process. reward model, asked to train a .outcome. one"):
        train_reward_model(cfg, rm0, rows1, [], tmp_path / "orm", kind="outcome")
    assert RewardModel.load(rm1).features == RewardModel.load(rm0).features != ()  # continued with its reference
    plain = cfg.model_copy(deep=True)
    plain.prm.surprise_features = False
    with pytest.raises(ValueError, match="prm.surprise_features=False but the reward model in .* was trained with"):
        train_reward_model(plain, rm0, rows1, [], tmp_path / "rm2")
