-- sweeps: the sweep records with their JSON text parsed. analysis/catalog.py defines _sweeps_files over
-- the files, and comments the view and its stored columns from grpo_core.store.tables.SWEEPS.
create or replace view sweeps as
with source as (
    from _sweeps_files
),
final as (
    select
        sweep,
        storage,
        sampler,
        pruner,
        direction,
        objective,
        json(space_json) as space,
        json(config_json) as config,
        status,
        n_trials,
        best_trial,
        best_value,
        report_path,
        created_at,
        updated_at
    from source
)
select * from final;
comment on column sweeps.space is 'the search space (space_json parsed as JSON), {"grpo.beta": {"low": ..., "high": ..., "log": true}, ...}';
comment on column sweeps.config is 'the base config every trial overrides (config_json parsed as JSON)';
