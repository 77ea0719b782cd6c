-- problem_scores(k): one row per (evaluation, problem) with the problem's greedy correctness, Pass@K
-- and Maj@K: the per-problem scores whose mean over problems is greedy_accuracy (evals), pass_at_k(k)
-- and maj_at_k(k), and the unit that analysis/stats.py's paired bootstrap resamples.
-- Errors, like pass_at_k(k), when k exceeds some problem's n; filter on run_id to read one run.
-- Usage: select * from problem_scores(16) where run_id = 'default-32decf95' order by iteration, step, problem_id
create or replace macro problem_scores(k) as table
with greedy as (
    select run_id, trial_id, iteration, step, problem_id, avg(correct::double) as greedy_correct
    from rollouts
    where split = 'eval' and decoding = 'greedy'
    group by all
),
pass as (
    select run_id, trial_id, iteration, step, problem_id, pass_at_k
    from pass_at_k_per_problem(k)
),
maj as (
    select run_id, trial_id, iteration, step, problem_id, maj_at_k
    from maj_at_k_per_problem(k)
),
sampled as (
    select pass.*, maj.maj_at_k
    from pass
    join maj using (run_id, iteration, step, problem_id)
    where pass.trial_id is not distinct from maj.trial_id
),
final as (
    select
        coalesce(g.run_id, s.run_id) as run_id,          -- run (runs.run_id)
        coalesce(g.trial_id, s.trial_id) as trial_id,    -- sweep trial id; null outside sweeps
        coalesce(g.iteration, s.iteration) as iteration, -- iterative-RL iteration (0 = before RL)
        coalesce(g.step, s.step) as step,                -- GRPO step at which the evaluation ran
        coalesce(g.problem_id, s.problem_id) as problem_id,  -- the problem
        k as k,                                          -- the K of pass_at_k and maj_at_k
        g.greedy_correct,  -- 1 if the greedy completion was judged correct, else 0; null without a greedy row
        s.pass_at_k,       -- unbiased Pass@K of the problem (pass_at_k_per_problem); null without samples
        s.maj_at_k         -- Maj@K of the problem (maj_at_k_per_problem); null without samples
    from greedy as g
    full outer join sampled as s
        on g.run_id = s.run_id and g.trial_id is not distinct from s.trial_id and g.iteration = s.iteration
        and g.step = s.step and g.problem_id = s.problem_id
)
select * from final
