-- trials: one row per Optuna trial of a sweep (one Parquet file per trial, replaced when its state changes).
-- Reads _trials_files, which analysis/catalog.py defines over {root}/trials/*/*.parquet.
-- A trial's rollouts, step metrics and run carry its trial_id: join rollouts/step_metrics/runs on it.
create or replace view trials as
with source as (
    from _trials_files
),
final as (
    select
        sweep,                                    -- the sweep (sweeps.sweep)
        trial_number,                             -- Optuna's trial number within the study
        trial_id,                                 -- tag on the trial's rows in runs, rollouts, step_metrics
        run_id,                                   -- the trial's run (runs.run_id); null if its config was invalid
        state,                                    -- 'RUNNING' | 'COMPLETE' | 'PRUNED' | 'FAIL'
        json(params_json) as params,              -- searched values as set in the config, e.g. params->>'$."grpo.beta"'
        value,                                    -- the objective; null unless state = 'COMPLETE'
        json(intermediate_json) as intermediate,  -- {iteration: objective} reported to the pruner
        wall_s,                                   -- seconds from start to end; null while running
        error,                                    -- why a FAIL trial failed
        retry_of,                                 -- the trial number this retries (left RUNNING by a crashed sweep)
        created_at,                               -- first write (UTC)
        updated_at                                -- last write (UTC)
    from source
)
select * from final
