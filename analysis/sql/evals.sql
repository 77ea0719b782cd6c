-- evals: one row per evaluation (run, iteration, step), from the split = 'eval' rollouts.
-- Pass@K and Maj@K are the table macros pass_at_k(k) and maj_at_k(k).
create or replace view evals as
with eval_rollouts as (
    select *
    from rollouts
    where split = 'eval'
),
final as (
    select
        run_id,            -- run (runs.run_id)
        trial_id,          -- sweep trial id; null outside sweeps
        iteration,         -- iterative-RL iteration
        step,              -- GRPO step at which the evaluation ran
        count(distinct problem_id) as n_problems,                                   -- problems evaluated
        count(*) filter (where decoding = 'greedy') as n_greedy,                    -- greedy completions
        avg(correct::double) filter (where decoding = 'greedy') as greedy_accuracy, -- share of greedy completions judged correct
        count(*) filter (where decoding = 'sample') as n_sampled,                   -- sampled completions (the Pass@K/Maj@K pool)
        avg(correct::double) filter (where decoding = 'sample') as sample_accuracy, -- share of sampled completions judged correct (= Pass@1)
        avg((answer is not null)::double) as wellformed_rate,                       -- share of all eval completions with an extractable answer
        avg((answer is not null)::double) filter (where decoding = 'greedy') as greedy_wellformed_rate, -- share of greedy completions with an extractable answer
        avg(n_tokens) as length_mean                                                -- mean completion length in tokens
    from eval_rollouts
    group by run_id, trial_id, iteration, step
)
select * from final
