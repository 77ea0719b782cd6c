-- prm_metrics: reward-model metrics in long format, one row per (run, iteration, epoch, metric).
-- Reads _prm_metrics_files, which analysis/catalog.py defines over {root}/prm_metrics/*/*.parquet
-- (one file per run, iteration, model and epoch; or an empty table of the same schema while there are none).
-- The writer is grpo_core.store.writer.Store.write_prm_metrics.
create or replace view prm_metrics as
with source as (
    from _prm_metrics_files
),
final as (
    select
        run_id,                                   -- run (runs.run_id)
        trial_id,                                 -- sweep trial id; null outside sweeps
        iteration,                                -- iterative-RL iteration the reward model was (re)trained in
        epoch,                                    -- 0 = labelling ('prm/label_*'), 1.. = training epochs
        metric,                                   -- namespaced name: 'prm/eval_auc_exact', 'orm/train_loss', ...
        split_part(metric, '/', 1) as namespace,  -- 'prm' (process RM) or 'orm' (outcome RM)
        value,                                    -- the metric's value after that epoch
        created_at                                -- when the epoch's file was written (UTC)
    from source
)
select * from final
