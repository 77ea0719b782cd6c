-- curves: training curves, one row per (run, iteration, step), from the split = 'train' rollouts.
-- Aggregates per GRPO group first (for frac_reward_zero_std), then per step from the group sums,
-- so the rollouts are scanned once.
create or replace view curves as
with train as (
    select run_id, trial_id, iteration, step, group_index, reward, correct, kl, n_tokens, finished, answer
    from rollouts
    where split = 'train'
),
groups as (
    select
        run_id, trial_id, iteration, step, group_index,
        count(*) as n,
        sum(reward) as reward_sum,
        sum(reward * reward) as reward_sq_sum,
        min(reward) = max(reward) as reward_zero_std,
        sum(correct::int) as n_correct,
        sum(kl) as kl_sum,
        count(kl) as kl_n,
        sum(n_tokens) as tokens_sum,
        sum((not finished)::int) as n_truncated,
        count(answer) as n_wellformed
    from train
    group by all
),
final as (
    select
        run_id,                                               -- run (runs.run_id)
        trial_id,                                             -- sweep trial id; null outside sweeps
        iteration,                                            -- iterative-RL iteration
        step,                                                 -- GRPO step
        sum(n) as n_rollouts,                                 -- train completions in the step
        count(*) as n_groups,                                 -- GRPO groups (questions) in the step
        sum(reward_sum) / sum(n) as reward_mean,              -- mean outcome reward
        sqrt(greatest(sum(reward_sq_sum) / sum(n) - pow(sum(reward_sum) / sum(n), 2), 0)) as reward_std,  -- population std of the reward over the step
        avg(reward_zero_std::double) as frac_reward_zero_std, -- share of groups whose rewards are all equal (zero advantage, no signal)
        sum(n_correct) / sum(n) as accuracy,                  -- share of completions judged correct
        sum(kl_sum) / nullif(sum(kl_n), 0) as kl_mean,        -- mean of the per-sample mean k3 KL; null when not recorded
        sum(tokens_sum) / sum(n) as length_mean,              -- mean completion length in tokens
        sum(n_truncated) / sum(n) as truncated_rate,          -- share of completions cut at the length limit
        sum(n_wellformed) / sum(n) as wellformed_rate         -- share of completions with an extractable answer
    from groups
    group by run_id, trial_id, iteration, step
)
select * from final
