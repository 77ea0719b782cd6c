"""Problem sources: the synthetic task and local GSM8K/MATH-layout files."""

from grpo_core.data.loaders import (
    BadRow,
    DataError,
    LoadedSplit,
    format_prompt,
    load_problems,
    load_task,
)
from grpo_core.data.problem import Problem

__all__ = ["BadRow", "DataError", "LoadedSplit", "Problem", "format_prompt", "load_problems", "load_task"]
