-- maj_at_k_per_problem(k): Maj@K of every evaluated problem, from its sampled eval completions.
-- Definition (exact, and what a majority-voting evaluation with K samples per problem reports):
--   * a problem's samples are cut into disjoint vote groups of k consecutive sample_index values
--     within its group: sample_index 0..k-1, k..2k-1, ...; with n samples (sample_index 0..n-1, as
--     the writer numbers them) that is floor(n / k) groups, and the last n mod k samples are left out
--     (in general: a vote group with fewer than k samples is left out);
--   * in each vote group the samples vote with answer_norm; a sample with no parsed answer
--     (answer_norm null) does not vote, and a group where no sample voted scores 0;
--   * the group's score is the correctness of the answer with the most votes; when several answers
--     tie for the most votes, the score is the mean correctness of the tied answers, i.e. the
--     expected score of breaking the tie uniformly at random (two tied answers, one right: 0.5);
--   * an answer's correctness is the share of its voters judged correct (0 or 1 when the verifier
--     judges equal answers alike); so the score is the share of correct samples among the voters
--     for the tied-top answers;
--   * Maj@K of the problem = mean score over its vote groups. maj_at_k(1) is the share of samples
--     judged correct among all samples (null answers count as wrong).
-- k must be a positive integer no larger than any problem's n; otherwise the macro raises an error.
-- Written as aggregations only (no window functions): on 2 cores DuckDB's windows over many tiny
-- partitions cost several times more than hash aggregates. k = 1 takes a shortcut with the same
-- result: every sample is its own vote group, scoring 1 when it parsed and is correct, so Maj@1 is
-- one count per problem instead of a vote per sample (the costliest case: n groups of one).
-- Usage: select * from maj_at_k_per_problem(16) where run_id = 'r1'
create or replace macro maj_at_k_per_problem(k) as table
with samples as (
    select
        run_id, trial_id, iteration, step, problem_id, group_index,
        sample_index // case  -- the vote group within (problem, group_index)
            when k >= 1 and k = floor(k) then k
            else error(format('maj_at_k: k must be a positive integer, got {}', k))
        end as vote,
        answer_norm, correct
    from rollouts
    where split = 'eval' and decoding = 'sample'
),
tallies as (  -- one row per (vote group, answer); the null answer's row counts the non-voters
    select
        run_id, trial_id, iteration, step, problem_id, group_index, vote, answer_norm,
        count(*) as n_votes,
        count(*) filter (where correct) as n_correct
    from samples
    group by all
),
vote_groups as (  -- one row per vote group
    select
        run_id, trial_id, iteration, step, problem_id, group_index, vote,
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
        sum(size) as n,                 -- sampled completions of this problem
        count(*) filter (where size = k) as n_vote_groups,  -- complete vote groups: floor(n / k)
        case
            when k > sum(size) then
                error(format('maj_at_k: k={} exceeds the n={} sampled eval completions of problem {} (run {}, iteration {}, step {})',
                             k, sum(size), problem_id, run_id, iteration, step))
            else avg(score) filter (where size = k)
        end as maj_at_k                 -- mean over vote groups of the majority answer's (expected) correctness
    from vote_groups
    where k <> 1
    group by run_id, trial_id, iteration, step, problem_id
    union all
    select run_id, trial_id, iteration, step, problem_id, k, n, n, n_right / n
    from single_votes
)
select * from final
