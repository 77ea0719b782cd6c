-- prm_metrics: the stored reward-model metrics plus their namespace. analysis/catalog.py defines
-- _prm_metrics_files over the files, and comments the stored columns from grpo_core.store.tables.PRM_METRICS.
create or replace view prm_metrics as
with source as (
    from _prm_metrics_files
),
final as (
    select
        run_id,
        trial_id,
        iteration,
        epoch,
        metric,
        split_part(metric, '/', 1) as namespace,
        value,
        created_at
    from source
)
select * from final;
comment on column prm_metrics.namespace is 'the part of metric before the first ''/'': ''prm'' (process RM) or ''orm'' (outcome RM)';
