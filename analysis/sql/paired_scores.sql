-- paired_scores(k, run_a, iteration_a, run_b, iteration_b): two evaluations' per-problem scores side by
-- side, one row per problem both evaluated (for a paired bootstrap over problems, analysis/stats.py).
-- Each side is the last evaluation (largest step) of that run's iteration: iteration 0 = before RL.
-- The *_diff columns are b minus a; their means are the differences the report states.
-- Usage: select * from paired_scores(16, 'default-32decf95', 0, 'default-32decf95', 2)   -- before vs after RL
--        select avg(maj_diff) from paired_scores(16, 'run-outcome', 2, 'run-process', 2)   -- two runs
create or replace macro paired_scores(k, run_a, iteration_a, run_b, iteration_b) as table
with scores as (
    from problem_scores(k)
    where (run_id = run_a and iteration = iteration_a) or (run_id = run_b and iteration = iteration_b)
),
a as (
    from scores
    where run_id = run_a and iteration = iteration_a
      and step = (select max(step) from scores where run_id = run_a and iteration = iteration_a)
),
b as (
    from scores
    where run_id = run_b and iteration = iteration_b
      and step = (select max(step) from scores where run_id = run_b and iteration = iteration_b)
),
final as (
    select
        problem_id,                           -- a problem both evaluations scored
        k as k,                               -- the K of pass and maj
        a.step as step_a,                     -- the GRPO step of evaluation a
        b.step as step_b,                     -- the GRPO step of evaluation b
        a.greedy_correct as greedy_a,         -- greedy correctness (0/1) in a
        b.greedy_correct as greedy_b,         -- in b
        b.greedy_correct - a.greedy_correct as greedy_diff,
        a.pass_at_k as pass_a,                -- Pass@K of the problem in a
        b.pass_at_k as pass_b,                -- in b
        b.pass_at_k - a.pass_at_k as pass_diff,
        a.maj_at_k as maj_a,                  -- Maj@K of the problem in a
        b.maj_at_k as maj_b,                  -- in b
        b.maj_at_k - a.maj_at_k as maj_diff
    from a
    join b using (problem_id)
)
select * from final
