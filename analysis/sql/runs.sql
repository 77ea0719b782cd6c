-- runs: the run records with their JSON text parsed. analysis/catalog.py defines _runs_files over the
-- files, and comments the view and its stored columns from grpo_core.store.tables.RUNS.
create or replace view runs as
with source as (
    from _runs_files
),
final as (
    select
        run_id,
        trial_id,
        name,
        config_json,
        json(config_json) as config,
        git_sha,
        code_fingerprint,
        json(versions_json) as versions,
        status,
        created_at,
        updated_at
    from source
)
select * from final;
comment on column runs.config is 'config_json parsed as JSON, e.g. config->>''$.grpo.beta''';
comment on column runs.versions is 'python and installed package versions (versions_json parsed as JSON), e.g. versions->>''$.torch''';
