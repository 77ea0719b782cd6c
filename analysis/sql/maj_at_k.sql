-- maj_at_k(k): Maj@K per evaluation (run, iteration, step): the mean over problems of
-- maj_at_k_per_problem(k) (vote groups of k samples from 8 partitions of each problem's samples, ties
-- scored by their expected value; see that file). Errors when k exceeds some problem's n.
-- Usage: select * from maj_at_k(64) order by run_id, iteration, step
create or replace macro maj_at_k(k) as table
with per_problem as (
    from maj_at_k_per_problem(k)
),
final as (
    select
        run_id,                              -- run (runs.run_id)
        trial_id,                            -- sweep trial id; null outside sweeps
        iteration,                           -- iterative-RL iteration
        step,                                -- GRPO step at which the evaluation ran
        k as k,                              -- the K of Maj@K
        count(*) as n_problems,              -- problems evaluated
        sum(n_vote_groups) as n_vote_groups, -- vote groups over all problems
        avg(maj_at_k) as maj_at_k            -- mean over problems, each problem weighted equally
    from per_problem
    group by run_id, trial_id, iteration, step
)
select * from final
