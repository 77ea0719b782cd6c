-- sweeps: one row per Optuna sweep (one Parquet file per sweep, replaced as it runs and when it ends).
-- Reads _sweeps_files, which analysis/catalog.py defines over {root}/sweeps/*.parquet
-- (or over an empty table of the same schema while there are no files yet).
create or replace view sweeps as
with source as (
    from _sweeps_files
),
final as (
    select
        sweep,                          -- the Optuna study name; trials.sweep joins on it
        storage,                        -- Optuna storage: a journal file path or an RDB URL (optuna-dashboard <storage>)
        sampler,                        -- 'tpe' | 'grid' | 'random'
        pruner,                         -- 'median' | 'none'
        direction,                      -- 'maximize' | 'minimize'
        objective,                      -- the held-out metric optimised, e.g. 'maj@16'
        json(space_json) as space,      -- the search space, {"grpo.beta": {"low": ..., "high": ..., "log": true}, ...}
        json(config_json) as config,    -- the base config every trial overrides
        status,                         -- 'running' until the sweep ends, then 'finished' or 'failed'
        n_trials,                       -- trials in the study when last written
        best_trial,                     -- Optuna number of the best complete trial; null if none completed
        best_value,                     -- its objective
        report_path,                    -- the sweep report (report.md; report.html beside it)
        created_at,                     -- first write of this sweep (UTC)
        updated_at                      -- last write (UTC)
    from source
)
select * from final
