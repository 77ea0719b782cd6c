"""The experiment store: Parquet tables written append-only by `Store`, read by analysis.catalog.

Each table is specified once in `grpo_core.store.tables` (name, schema, path, column docs); `Store`
writes its files there and the catalog builds its views and their comments from the same specs.
"""

from grpo_core.store.tables import (
    EXPERIMENT_RUNS,
    PRM_LABELS,
    PRM_METRICS,
    ROLLOUTS,
    RUNS,
    STEP_METRICS,
    SWEEPS,
    TABLES,
    TRIALS,
    Column,
    TableSpec,
)
from grpo_core.store.validate import SchemaError
from grpo_core.store.writer import Store

__all__ = [
    "EXPERIMENT_RUNS",
    "PRM_LABELS",
    "PRM_METRICS",
    "ROLLOUTS",
    "RUNS",
    "STEP_METRICS",
    "SWEEPS",
    "TABLES",
    "TRIALS",
    "Column",
    "SchemaError",
    "Store",
    "TableSpec",
]
