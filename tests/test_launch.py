"""The multi-process launcher's entry (flows.launch) in one process: the whole of Algorithm 1 without
Prefect, process supervision and evaluations included."""

from __future__ import annotations

import yaml

from analysis.catalog import query
from flows.launch import main
from grpo_core.pipeline.stages import run_id_for
from tests.conftest import one_thread
from tests.test_flows import expected_counts, flow_config, rollout_counts

PROCESS = ["run_name=launched", "iterative.iterations=2", "grpo.supervision=process", "iterative.label_problems=4",
           "prm.samples_per_problem=2", "prm.n_completions=2", "prm.epochs=1"]


def test_launcher_runs_process_supervision_and_evaluates_every_iteration(tmp_path, tiny_cfg, tiny_policy_dir):
    cfg = flow_config(tmp_path, tiny_cfg, *PROCESS)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    with one_thread():
        assert main(["--config", str(config_file)]) == 0
    run_id = run_id_for(cfg)
    assert rollout_counts(cfg, run_id) == expected_counts(2, 2)  # evaluations before RL and after each iteration
    labelled = query(cfg.store.root, "SELECT DISTINCT iteration FROM prm_labels WHERE run_id = $r ORDER BY 1",
                     {"r": run_id}).column("iteration").to_pylist()
    assert labelled == [1, 2]
    versions = query(cfg.store.root, "SELECT DISTINCT iteration, reward_model FROM rollouts WHERE run_id = $r "
                     "AND split = 'train' ORDER BY 1", {"r": run_id}).to_pylist()
    assert [(v["iteration"], v["reward_model"]) for v in versions] == [
        (1, f"process:{run_id}:it001"), (2, f"process:{run_id}:it002")]
    runs = query(cfg.store.root, "SELECT status, code_fingerprint FROM runs WHERE run_id = $r", {"r": run_id})
    assert runs.column("status").to_pylist() == ["finished"]
    assert runs.column("code_fingerprint").to_pylist()[0].startswith("src-")

