-- run_info: one row per run with the config fields the analyses group and align by, read from the
-- run's config (runs.config, the ExperimentConfig dump). A field the config lacks is null.
-- Usage: select run_id, supervision, steps_per_iteration from run_info
create or replace view run_info as
with source as (
    from runs
),
final as (
    select
        run_id,                                                    -- run (runs.run_id)
        trial_id,                                                  -- sweep trial id; null outside sweeps
        name,                                                      -- human-readable run name
        status,                                                    -- 'running', 'finished' or 'failed'
        config->>'$.grpo.supervision' as supervision,              -- 'outcome' (Sec. 4.1.2) or 'process' (Sec. 4.1.3)
        (config->>'$.grpo.steps')::integer as steps_per_iteration, -- M: GRPO steps per iteration
        (config->>'$.iterative.iterations')::integer as iterations, -- I: iterations of iterative RL
        (config->>'$.grpo.group_size')::integer as group_size,     -- G: samples per question
        (config->>'$.grpo.beta')::double as beta,                  -- beta: KL coefficient
        (config->>'$.eval.k_max')::integer as k_max,               -- largest K of the evaluations' Pass@K / Maj@K
        (config->>'$.eval.n_samples')::integer as n_eval_samples,  -- n: sampled eval completions per problem
        created_at,                                                -- first write of the run (UTC)
        updated_at                                                 -- last write of the run (UTC)
    from source
)
select * from final
