-- step_metrics_wide: one row per (run, iteration, step), one column per metric name (e.g. "train/kl").
-- DuckDB allows PIVOT in a view only with its values spelled out, so analysis/catalog.py replaces
-- {{ metrics }} with the quoted metric names present in step_metrics when it connects (a metric that
-- first appears later gets its column at the next connect). The list starts with '(none)', which no
-- metric is named (the writer requires 'namespace/name'), so it is never empty; its column is dropped.
-- Quote the metric columns: select run_id, step, "train/kl" from step_metrics_wide
create or replace view step_metrics_wide as
with long as (
    select run_id, trial_id, iteration, step, metric, value
    from step_metrics
),
final as (
    pivot long
    on metric in ('(none)', {{ metrics }})
    using any_value(value)  -- at most one value per (run, iteration, step, metric): a step is one file
    group by run_id, trial_id, iteration, step
)
select * exclude ("(none)") from final
