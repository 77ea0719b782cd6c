-- step_metrics: training metrics in long format, one row per (run, iteration, step, metric).
-- Reads _step_metrics_files, which analysis/catalog.py defines over {root}/step_metrics/*/*.parquet
-- (one file per run, iteration and step; or an empty table of the same schema while there are none).
create or replace view step_metrics as
with source as (
    from _step_metrics_files
),
final as (
    select
        run_id,                               -- run (runs.run_id)
        trial_id,                             -- sweep trial id; null outside sweeps
        iteration,                            -- iterative-RL iteration
        step,                                 -- GRPO step within the run
        metric,                               -- namespaced name: 'train/kl', 'rollout/reward_mean', 'time/generate_s'
        split_part(metric, '/', 1) as namespace,  -- the part before the first '/': train, rollout, eval, prm, time
        value,                                -- the metric's value at this step
        created_at                            -- when the step's file was written (UTC)
    from source
)
select * from final
