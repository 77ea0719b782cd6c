-- trials: the trial records with their JSON text parsed. analysis/catalog.py defines _trials_files over
-- the files, and comments the view and its stored columns from grpo_core.store.tables.TRIALS.
create or replace view trials as
with source as (
    from _trials_files
),
final as (
    select
        sweep,
        trial_number,
        trial_id,
        run_id,
        state,
        json(params_json) as params,
        value,
        json(intermediate_json) as intermediate,
        wall_s,
        error,
        retry_of,
        created_at,
        updated_at
    from source
)
select * from final;
comment on column trials.params is 'searched values as set in the config (params_json parsed as JSON), e.g. params->>''$."grpo.beta"''';
comment on column trials.intermediate is '{iteration: objective} reported to the pruner (intermediate_json parsed as JSON)';
