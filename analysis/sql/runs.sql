-- runs: one row per training run (one Parquet file per run, replaced when its status changes).
-- Reads _runs_files, which analysis/catalog.py defines over {root}/runs/*.parquet
-- (or over an empty table of the same schema while there are no files yet).
create or replace view runs as
with source as (
    from _runs_files
),
final as (
    select
        run_id,                          -- unique run id, the key every other table joins on
        trial_id,                        -- Optuna sweep trial id; null for a run outside a sweep
        name,                            -- human-readable run name
        config_json,                     -- the full run config (pydantic model dump) as JSON text
        json(config_json) as config,     -- the same as JSON, e.g. config->>'$.grpo.beta'
        git_sha,                         -- git HEAD of the working directory at launch; null outside git
        json(versions_json) as versions, -- python and installed package versions, e.g. versions->>'$.torch'
        status,                          -- 'running' until the run ends, then 'finished', 'failed' or 'pruned' (sweeps)
        created_at,                      -- first write of this run (UTC)
        updated_at                       -- last write of this run (UTC)
    from source
)
select * from final
