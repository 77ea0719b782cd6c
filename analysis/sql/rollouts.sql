-- rollouts: one row per sampled completion, train and eval, with its rewards, advantage and KL.
-- Reads _rollouts_files, which analysis/catalog.py defines over {root}/rollouts/*/*.parquet
-- (one file per run, iteration, step and split; or an empty table of the same schema while there are
-- no files yet). The writer is grpo_core.store.writer.Store.write_rollouts; its ROLLOUT_SCHEMA gives the types.
create or replace view rollouts as
with source as (
    from _rollouts_files
),
final as (
    select
        run_id,        -- run that produced the sample (runs.run_id)
        trial_id,      -- sweep trial id; null outside sweeps
        iteration,     -- iterative-RL iteration (reward model retrained, reference reset), 0-based
        step,          -- GRPO step (policy update) index within the run
        split,         -- 'train' (a GRPO group) or 'eval' (held-out evaluation)
        decoding,      -- 'sample' (temperature sampling) or 'greedy'
        problem_id,    -- problem the prompt came from
        group_index,   -- the question's index within the step (one GRPO group of G samples)
        sample_index,  -- the sample's index within its group, 0-based
        prompt,        -- prompt text given to the policy
        completion,    -- generated text
        gold,          -- reference answer
        answer,        -- answer extracted from the completion as written; null when none could be parsed
        answer_norm,   -- canonical form of answer, the key of a majority vote; null when none was parsed
        correct,       -- the verifier's verdict on answer vs gold
        reward,        -- outcome reward (rule verifier or ORM score)
        step_rewards,  -- per-reasoning-step PRM scores (process supervision); null otherwise
        advantage,     -- the sample's advantage (outcome: group z-score); null for eval rows
        n_tokens,      -- completion length in tokens
        finished,      -- true when generation ended with EOS; false = truncated at the length limit
        kl,            -- mean per-token k3 estimate of KL(policy || reference); null when not computed
        logprob_sum,   -- sum of the sampling engine's token log-probs of the completion
        engine,        -- rollout engine ('hf', 'vllm', ...)
        reward_model,  -- reward model that scored the sample; null for the rule verifier
        created_at     -- when the step's file was written (UTC)
    from source
)
select * from final
