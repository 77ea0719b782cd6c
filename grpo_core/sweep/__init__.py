"""Optuna sweeps over the experiment's knobs, one module per job:

    space      what is searched: ParamSpec, the default space, knob lookup and validation
               (grpo_core.config's SweepConfig.space has its type and checks from here)
    objective  which held-out metric scores a trial, and its name
    suggest    one trial's values from the sampler, and the trial's config
    study      the study: storage, sampler, pruner, open/continue, ask, a trial from its own process
    records    the sweep's rows in the store (trials, sweeps) and its directory

No Prefect here: flows/sweep.py asks for trials and runs each in its own process (flows/trial.py), which
reports to the same study. Only Optuna's public API is used. This package's __init__ imports nothing, so
that grpo_core.config can import `space` without loading Optuna or itself again.
"""
