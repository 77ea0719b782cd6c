-- maj_at_k_per_problem(k, partitions := 8): Maj@K of every evaluated problem, from its sampled eval
-- completions, averaged over the vote groups of several partitions of its samples.
-- Definition:
--   * a problem's n samples within its group (sample_index 0..n-1, as the writer numbers them) are cut
--     `partitions` times into disjoint vote groups of k. Partition r relabels sample i as
--     (a * i + b) mod n, a bijection because a is coprime to n: a = A[r mod |A| + 1], b = r div |A|,
--     with A the integers 1..max(1, n div 2) coprime to n (A = [1, 3, 5, 7] for n = 16); vote group
--     = relabelled index div k. Partition 0 (a = 1, b = 0) is consecutive sample_index values 0..k-1,
--     k..2k-1, ...: partitions := 1 is the classic single set of disjoint vote groups. Each partition
--     has floor(n / k) complete groups; its last n mod k samples are left out (another partition
--     takes them), and any vote group with fewer than k samples is left out;
--   * in each vote group the samples vote with answer_norm; a sample with no parsed answer
--     (answer_norm null) does not vote, and a group where no sample voted scores 0;
--   * the group's score is the correctness of the answer with the most votes; when several answers
--     tie for the most votes, the score is the mean correctness of the tied answers, i.e. the
--     expected score of breaking the tie uniformly at random (two tied answers, one right: 0.5);
--   * an answer's correctness is the share of its voters judged correct (0 or 1 when the verifier
--     judges equal answers alike); so the score is the share of correct samples among the voters
--     for the tied-top answers;
--   * Maj@K of the problem = mean score over the complete vote groups of all partitions.
-- Bias: none. The n samples of a problem are i.i.d. draws of the policy at temperature, so any k
-- distinct of them are distributed as k fresh samples and every vote group's score is an unbiased
-- estimate of the policy's Maj@K on the problem, whichever samples it holds; so is their mean. More
-- partitions lower the variance (towards the mean over all C(n, k) subsets) but not below it, and
-- change nothing when k = n (one group, the single vote of a K = n evaluation) or k = 1. When k >= n
-- only partition 0 is computed (all are the same).
-- k must be a positive integer no larger than any problem's n; otherwise the macro raises an error.
-- Written as aggregations only (no window functions): on 2 cores DuckDB's windows over many tiny
-- partitions cost several times more than hash aggregates. k = 1 takes a shortcut with the same
-- result: every sample is its own vote group, scoring 1 when it parsed and is correct, so Maj@1 is
-- one count per problem instead of a vote per sample (the costliest case: n groups of one).
-- Usage: select * from maj_at_k_per_problem(16) where run_id = 'r1'
--        select * from maj_at_k_per_problem(16, partitions := 1)   -- consecutive groups only
create or replace macro maj_at_k_per_problem(k, partitions := 8) as table
with eval_samples as (
    select run_id, trial_id, iteration, step, problem_id, group_index, sample_index, answer_norm, correct
    from rollouts
    where split = 'eval' and decoding = 'sample' and k <> 1
),
group_sizes as (  -- n of each (problem, group_index), and the multipliers A coprime to it
    select
        run_id, trial_id, iteration, step, problem_id, group_index,
        count(*) as n,
        list_filter(range(1, greatest(count(*) // 2, 1) + 1), lambda a: gcd(a, count(*)) = 1) as mults
    from eval_samples
    group by all
),
samples as (  -- one row per (sample, partition r)
    select
        s.run_id, s.trial_id, s.iteration, s.step, s.problem_id, s.group_index, r.r,
        ((g.mults[r.r % len(g.mults) + 1] * s.sample_index + r.r // len(g.mults)) % g.n) // case
            when k >= 1 and k = floor(k) then k
            else error(format('maj_at_k: k must be a positive integer, got {}', k))
        end as vote,  -- the vote group within (problem, group_index, partition)
        s.answer_norm, s.correct
    from eval_samples as s
    join group_sizes as g using (run_id, iteration, step, problem_id, group_index)
    cross join (
        select range as r
        from range(case
            when partitions >= 1 and partitions = floor(partitions) then partitions
            else error(format('maj_at_k: partitions must be a positive integer, got {}', partitions))
        end)
    ) as r
    where s.trial_id is not distinct from g.trial_id and (r.r = 0 or k < g.n)
),
tallies as (  -- one row per (vote group, answer); the null answer's row counts the non-voters
    select
        run_id, trial_id, iteration, step, problem_id, group_index, r, vote, answer_norm,
        count(*) as n_votes,
        count(*) filter (where correct) as n_correct
    from samples
    group by all
),
vote_groups as (  -- one row per vote group
    select
        run_id, trial_id, iteration, step, problem_id, group_index, r, vote,
        sum(n_votes) as size,  -- samples in the group, voters or not; k unless it is a tail
        max(n_votes) filter (where answer_norm is not null) as top_votes,
        list(n_votes) filter (where answer_norm is not null) as votes,        -- per answer
        list(n_correct) filter (where answer_norm is not null) as corrects,   -- per answer, same order
        -- correct voters over all voters, among the answers with top_votes votes; 0 with no voters
        coalesce(
            list_sum(list_filter(corrects, lambda c, i: votes[i] = top_votes))
                / list_sum(list_filter(votes, lambda v: v = top_votes)),
            0.0
        ) as score
    from tallies
    group by all
),
single_votes as (  -- k = 1 only (an empty scan otherwise): counts per problem
    select
        run_id, trial_id, iteration, step, problem_id,
        count(*) as n,
        count(*) filter (where correct and answer_norm is not null) as n_right
    from rollouts
    where k = 1 and split = 'eval' and decoding = 'sample'
    group by all
),
final as (
    select
        run_id,                         -- run (runs.run_id)
        trial_id,                       -- sweep trial id; null outside sweeps
        iteration,                      -- iterative-RL iteration
        step,                           -- GRPO step at which the evaluation ran
        problem_id,                     -- the problem
        k as k,                         -- the K of Maj@K
        sum(size) filter (where r = 0) as n,  -- sampled completions of this problem
        count(*) filter (where size = k) as n_vote_groups,  -- complete vote groups, all partitions
        case
            when k > sum(size) filter (where r = 0) then
                error(format('maj_at_k: k={} exceeds the n={} sampled eval completions of problem {} (run {}, iteration {}, step {})',
                             k, sum(size) filter (where r = 0), problem_id, run_id, iteration, step))
            else avg(score) filter (where size = k)
        end as maj_at_k                 -- mean over vote groups of the majority answer's (expected) correctness
    from vote_groups
    group by run_id, trial_id, iteration, step, problem_id
    union all
    select run_id, trial_id, iteration, step, problem_id, k, n, n, n_right / n
    from single_votes
)
select * from final
