-- experiment_runs: which runs make each experiment's arms and seeds, the overrides' JSON text parsed.
-- analysis/catalog.py defines _experiment_runs_files over the files, and comments the view and its
-- stored columns from grpo_core.store.tables.EXPERIMENT_RUNS.
-- Usage: select arm, seed, r.status from experiment_runs join runs r using (run_id) where experiment = 'main'
create or replace view experiment_runs as
with source as (
    from _experiment_runs_files
),
final as (
    select
        experiment,
        arm,
        seed,
        run_id,
        json(overrides_json) as overrides,
        created_at,
        updated_at
    from source
)
select * from final;
comment on column experiment_runs.overrides is 'the arm''s overrides plus the seed knobs (overrides_json parsed as JSON), e.g. overrides->>''$."grpo.supervision"''';
