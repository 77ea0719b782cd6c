-- step_metrics: the stored training metrics plus their namespace. analysis/catalog.py defines
-- _step_metrics_files over the files, and comments the stored columns from grpo_core.store.tables.STEP_METRICS.
create or replace view step_metrics as
with source as (
    from _step_metrics_files
),
final as (
    select
        run_id,
        trial_id,
        iteration,
        step,
        metric,
        split_part(metric, '/', 1) as namespace,
        value,
        created_at
    from source
)
select * from final;
comment on column step_metrics.namespace is 'the part of metric before the first ''/'': train, rollout, eval, prm, time';
