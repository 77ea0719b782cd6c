"""Run the grpo/iterative flow on the config in a JSON file (for the kill-and-rerun test).

    python tests/helpers/flow_script.py CONFIG_JSON

Prefect's API, home and result storage come from the environment (the test's).
"""

import sys
from pathlib import Path

import torch

from flows.grpo import grpo_iterative
from grpo_core.config import ExperimentConfig

torch.set_num_threads(1)  # tiny model; two threads spin-wait when the cores are shared
cfg = ExperimentConfig.model_validate_json(Path(sys.argv[1]).read_text())
grpo_iterative(cfg)
