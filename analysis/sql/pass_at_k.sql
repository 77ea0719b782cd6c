-- pass_at_k(k): Pass@K per evaluation (run, iteration, step): the mean over problems of
-- pass_at_k_per_problem(k) (unbiased estimator, see that file). Errors when k exceeds some problem's n.
-- Usage: select * from pass_at_k(64) order by run_id, iteration, step
create or replace macro pass_at_k(k) as table
with per_problem as (
    from pass_at_k_per_problem(k)
),
final as (
    select
        run_id,                    -- run (runs.run_id)
        trial_id,                  -- sweep trial id; null outside sweeps
        iteration,                 -- iterative-RL iteration
        step,                      -- GRPO step at which the evaluation ran
        k as k,                    -- the K of Pass@K
        count(*) as n_problems,    -- problems evaluated
        min(n) as n_min,           -- fewest samples of a problem
        max(n) as n_max,           -- most samples of a problem
        avg(pass_at_k) as pass_at_k  -- mean over problems, each problem weighted equally
    from per_problem
    group by run_id, trial_id, iteration, step
)
select * from final
