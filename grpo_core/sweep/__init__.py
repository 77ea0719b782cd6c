"""Optuna sweeps: search space, study, objective and storage."""
