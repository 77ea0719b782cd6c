"""Flow `prm/train` (deployment `train` of the flow named "prm"): label policy samples, train the PRM.

    python -m flows.prm                            # on the embedded default, no server needed
    prefect deployment run prm/train --params '{"cfg": {"iterative": {"label_problems": 512}}}'

The reward-model half of one iteration of iterative RL, standalone: the policy (model.path or the
embedded one) samples prm.samples_per_problem solutions of iterative.label_problems train problems,
Math-Shepherd labels their steps (prm_labels), and a PRM initialised from the policy trains on them
(prm_metrics: held-out step AUC per epoch). The run is recorded as `{run_name}-prm-{config hash}`,
so its labels never mix with a GRPO run's; its labels, metrics and PRM dir carry iteration 1
(`<runs_dir>/<run_id>/it001/prm`). Query the result: select * from prm_metrics where run_id = '...'.
"""

from __future__ import annotations

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow  # noqa: E402

from analysis.catalog import query  # noqa: E402
from flows import tasks  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.iterate import first_reward_model_init  # noqa: E402

ITERATION = 1  # the store's iteration number of the labels and the PRM


def prm_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config this flow records its run under: run_name '{run_name}-prm'."""
    return cfg.model_copy(update={"run_name": f"{cfg.run_name}-prm"})


@flow(name="prm", flow_run_name=tasks.named_by_run("train", prm_config), log_prints=True,
      **tasks.end_state_hooks(prm_config))
def prm_train(cfg: ExperimentConfig = ExperimentConfig()) -> dict:
    """Label fresh samples of the policy and train a process reward model on them.
    Returns {'run_id', 'reward_model' (its dir), 'label_steps', 'metrics' (the last epoch's)}."""
    prm_cfg = prm_config(cfg)
    run_id = tasks.start_run(prm_cfg)
    policy = tasks.bootstrap_policy(cfg)
    steps = tasks.label_steps(prm_cfg, policy, run_id, ITERATION)
    init = str(first_reward_model_init(cfg, policy))
    reward_model = tasks.train_reward_model(prm_cfg, init, run_id, ITERATION)
    tasks.finish_run(prm_cfg)
    metrics = query(cfg.store.root, "select metric, value from prm_metrics where run_id = $run and iteration = $it "
                    "qualify epoch = max(epoch) over ()", {"run": run_id, "it": ITERATION}).to_pylist()
    result = {"run_id": run_id, "reward_model": reward_model, "label_steps": steps,
              "metrics": {m["metric"]: m["value"] for m in metrics}}
    print(f"reward model: {reward_model}; {steps} labelled steps; last epoch: "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(result["metrics"].items())))
    return result


if __name__ == "__main__":
    prm_train(ExperimentConfig())
