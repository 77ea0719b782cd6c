-- eval_at_k(k): Pass@K and Maj@K side by side per evaluation (run, iteration, step), from the
-- pass_at_k(k) and maj_at_k(k) macros. The paper's Sec. 5.2 question: does RL lift Maj@K but not Pass@K?
-- Usage: select * from eval_at_k(16) where run_id = 'default-1234abcd' order by iteration, step
create or replace macro eval_at_k(k) as table
with pass as (
    from pass_at_k(k)
),
maj as (
    from maj_at_k(k)
),
final as (
    select
        pass.run_id,               -- run (runs.run_id)
        pass.trial_id,             -- sweep trial id; null outside sweeps
        pass.iteration,            -- iterative-RL iteration
        pass.step,                 -- GRPO step at which the evaluation ran
        pass.k,                    -- the K of Pass@K and Maj@K
        pass.n_problems,           -- problems evaluated
        pass.pass_at_k,            -- unbiased Pass@K, mean over problems
        maj.maj_at_k               -- Maj@K (expected majority-vote accuracy), mean over problems
    from pass
    join maj using (run_id, iteration, step)
    where pass.trial_id is not distinct from maj.trial_id
)
select * from final
