"""Config loading: defaults, YAML + overrides, and clear errors for impossible values (the sweep's search
space included)."""

from pathlib import Path

import pytest
import yaml

from grpo_core.config import ConfigError, ExperimentConfig, commented_yaml, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_paper_where_the_cpu_default_allows():
    cfg = ExperimentConfig()
    assert cfg.grpo.beta == 0.04  # Sec. 4.2
    assert cfg.grpo.mu == 1  # one update per exploration stage
    assert cfg.grpo.loss_agg == "seq_mean_token_mean"  # 1/|o_i| per sequence (Eq. 3)
    assert cfg.eval.temperature == 0.7  # Sec. 5.2
    assert cfg.prm.replay_fraction == 0.1  # Sec. 4.1.4
    assert cfg.prm.lr == 1e-4  # departure: paper 2e-5 is for 7B (PRMConfig docstring)


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("run_name: x\ngrpo:\n  beta: 0.1\n  group_size: 4\n")
    cfg = load_config(f, ["grpo.beta=0.0", "rollout.temperature=0.5", "task.synthetic.max_number=20"])
    assert (cfg.run_name, cfg.grpo.beta, cfg.grpo.group_size) == ("x", 0.0, 4)
    assert cfg.rollout.temperature == 0.5 and cfg.task.synthetic.max_number == 20


def test_shipped_configs_load():
    for f in (REPO / "configs").glob("*.yaml"):
        load_config(f)


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ("grpo.group_size=1", "grpo.group_size", "greater than or equal to 2"),
        ("grpo.beta=-0.01", "grpo.beta", "greater than or equal to 0"),
        ("grpo.epsilon=0", "grpo.epsilon", "greater than 0"),
        ("grpo.lr=0", "grpo.lr", "greater than 0"),
        ("model.sft_lr=-1", "model.sft_lr", "greater than 0"),
        ("eval.k_max=32", "eval", "k_max (32) must be <= n_samples (16)"),
        ("grpo.bogus=1", "grpo.bogus", "unknown key"),
        ("grpo.minibatch_size=1000", "grpo", "minibatch_size (1000) must be <= group_size"),
        ("task.source=gsm8k", "task", "set task.train_path"),
        ("task.prompt_template=Q", "task", "{question}"),
        ("reward.functions={}", "reward", "at least one reward function"),
        ("reward.functions={correct: .nan}", "reward", "finite"),
        ("task.synthetic.min_steps=5", "task.synthetic", "min_steps (5) must be <= max_steps (3)"),
        # the sweep's knobs and search space (grpo_core.sweep.space): the entry's key in the message
        ("sweep.space.grpo.beta={low: 0.2, high: 0.001, log: true}", "sweep.space.grpo.beta", "low (0.2) must be <="),
        ("sweep.space.grpo.beta={low: 0.0, high: 0.2, log: true}", "sweep.space.grpo.beta", "log: true needs low > 0"),
        ("sweep.space.grpo.epsilon={low: 0.0, high: 0.4}", "sweep", "space.grpo.epsilon.low: 0.0 is not a valid "
         "grpo.epsilon: Input should be greater than 0"),
        ("sweep.space.grpo.group_size={choices: [1, 4]}", "sweep", "space.grpo.group_size.choices: 1 is not a valid "
         "grpo.group_size: Input should be greater than or equal to 2"),
        ("sweep.space.grpo.gamma={low: 0.1, high: 0.2}", "sweep", "space.grpo.gamma: grpo.gamma is not a configuration key"),
        ("sweep.sampler=grid", "sweep", "space.grpo.beta: sampler 'grid' needs discrete values: give choices or a step"),
        ("sweep.n_parallel=0", "sweep.n_parallel", "greater than or equal to 1"),
        ("sweep.name=a/b", "sweep.name", "pattern"),
    ],
)
def test_impossible_values_fail_naming_the_field(override, field, hint):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert f"  {field}:" in text and hint in text, text


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(None, ["grpo.beta"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["run_name=a", "run_name.x=1"])


def test_error_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("grpo:\n  group_size: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(f)


def test_commented_yaml_round_trips_and_documents_every_field():
    text = commented_yaml(ExperimentConfig())
    assert ExperimentConfig.model_validate(yaml.safe_load(text)) == ExperimentConfig()
    assert "group_size: 8  # G: samples per question (paper: 64) [>= 2]" in text
    leaf_lines = [line for line in text.splitlines() if not line.rstrip().endswith(":") and ":  #" not in line]
    assert all("  # " in line for line in leaf_lines)


def test_run_forms_leave_the_sweep_section_to_the_sweep_deployment():
    """Prefect builds each deployment's run form from its flow's parameter schema."""
    import json

    from prefect.utilities.callables import parameter_schema

    from flows.grpo import grpo_iterative, grpo_single
    from flows.prm import prm_train
    from flows.sweep import sweep
    from grpo_core.config import SweepExperimentConfig

    def schema(flow) -> dict:
        return json.loads(json.dumps(parameter_schema(flow.fn).model_dump()))

    for flow in (grpo_iterative, grpo_single, prm_train):
        defs = schema(flow)["definitions"]
        assert "SweepConfig" not in defs and "sweep" not in defs["ExperimentConfig"]["properties"], flow.name
        assert list(defs["ExperimentConfig"]["properties"])[:3] == ["run_name", "grpo", "iterative"]
    sweep_defs = schema(sweep)["definitions"]
    assert "sweep" in sweep_defs["SweepExperimentConfig"]["properties"] and "SweepConfig" in sweep_defs
    # the sweep section still validates and is still there for everything that reads a config
    cfg = load_config(None, ["sweep.n_trials=3"])
    assert cfg.sweep.n_trials == 3 and SweepExperimentConfig.model_validate(cfg).sweep.n_trials == 3
