-- iteration_gains(k): one row per evaluation (before RL = iteration 0, then after each iteration) with
-- greedy accuracy, Pass@1, Pass@K and Maj@K, and what each iteration added (Fig. 6: the gain of each
-- iteration of iterative RL). The *_gain columns are the change from the run's previous evaluation
-- (null for the first one). Maj@1 equals Pass@1 (see maj_at_k_per_problem), so it is not repeated.
-- Errors, like pass_at_k(k), when k exceeds some problem's n; filter on run_id to read one run:
-- the filter reaches the macros' scans, so other runs' sample counts do not matter.
-- Usage: select * from iteration_gains(16) where run_id = 'default-32decf95' order by iteration
create or replace macro iteration_gains(k) as table
with evals as (
    from run_evals
),
pass_1 as (
    select run_id, trial_id, iteration, step, pass_at_k as pass_at_1
    from pass_at_k(1)
),
at_k as (
    select run_id, trial_id, iteration, step, pass_at_k, maj_at_k
    from eval_at_k(k)
),
joined as (
    select evals.*, pass_1.pass_at_1, at_k.pass_at_k, at_k.maj_at_k
    from evals
    join pass_1 using (run_id, iteration, step)
    join at_k using (run_id, iteration, step)
    where evals.trial_id is not distinct from pass_1.trial_id and evals.trial_id is not distinct from at_k.trial_id
),
final as (
    select
        run_id,            -- run (runs.run_id)
        trial_id,          -- sweep trial id; null outside sweeps
        supervision,       -- 'outcome' or 'process' (run_info.supervision)
        iteration,         -- 0 = before RL, i = after iteration i
        step,              -- GRPO step of the iteration at which the evaluation ran
        global_step,       -- GRPO steps since the run began (run_evals.global_step)
        k as k,            -- the K of pass_at_k and maj_at_k
        n_problems,        -- problems evaluated
        greedy_accuracy,   -- share of greedy completions judged correct
        pass_at_1,         -- Pass@1 (= Maj@1), mean over problems
        pass_at_k,         -- unbiased Pass@K, mean over problems
        maj_at_k,          -- Maj@K, mean over problems
        greedy_accuracy - lag(greedy_accuracy) over run as greedy_gain,  -- change since the previous evaluation
        pass_at_1 - lag(pass_at_1) over run as pass_at_1_gain,
        pass_at_k - lag(pass_at_k) over run as pass_at_k_gain,
        maj_at_k - lag(maj_at_k) over run as maj_at_k_gain
    from joined
    window run as (partition by run_id, trial_id order by iteration, step)
)
select * from final
