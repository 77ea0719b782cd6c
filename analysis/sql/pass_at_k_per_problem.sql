-- pass_at_k_per_problem(k): Pass@K of every evaluated problem, from its sampled eval completions.
-- Unbiased estimator (Chen et al. 2021, arXiv 2107.03374, eq. 1): with n samples of which c are
-- correct, pass@k = 1 - C(n-c, k) / C(n, k), the chance that k samples drawn without replacement
-- from the n include a correct one. Computed in the numerically stable product form
-- 1 - prod_{i = n-c+1}^{n} (1 - k / i), which never forms a binomial coefficient.
-- k must be a positive integer no larger than any problem's n; otherwise the macro raises an error.
-- Usage: select * from pass_at_k_per_problem(16) where run_id = 'r1'
create or replace macro pass_at_k_per_problem(k) as table
with samples as (
    select run_id, trial_id, iteration, step, problem_id, correct
    from rollouts
    where split = 'eval' and decoding = 'sample'
),
counts as (
    select
        run_id, trial_id, iteration, step, problem_id,
        count(*) as n,
        count(*) filter (where correct) as c
    from samples
    group by all
),
final as (
    select
        run_id,      -- run (runs.run_id)
        trial_id,    -- sweep trial id; null outside sweeps
        iteration,   -- iterative-RL iteration
        step,        -- GRPO step at which the evaluation ran
        problem_id,  -- the problem
        k as k,      -- the K of Pass@K
        n,           -- sampled completions of this problem
        c,           -- of which judged correct
        case
            when k < 1 or k <> floor(k) then
                error(format('pass_at_k: k must be a positive integer, got {}', k))
            when k > n then
                error(format('pass_at_k: k={} exceeds the n={} sampled eval completions of problem {} (run {}, iteration {}, step {})',
                             k, n, problem_id, run_id, iteration, step))
            when c = 0 then 0.0
            when n - c < k then 1.0  -- every k-subset contains a correct sample
            else 1.0 - list_product(list_transform(range(n - c + 1, n + 1), lambda i: 1.0 - k / i))
        end as pass_at_k  -- unbiased estimate of P(at least one of k samples is correct)
    from counts
)
select * from final
