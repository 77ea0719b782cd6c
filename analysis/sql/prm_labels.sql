-- prm_labels: Math-Shepherd process labels, one row per reasoning step of a policy solution.
-- Reads _prm_labels_files, which analysis/catalog.py defines over {root}/prm_labels/*/*.parquet
-- (one file per run and iteration; or an empty table of the same schema while there are none).
-- The writer is grpo_core.store.writer.Store.write_prm_labels; rows come from prm.label.label_solutions.
create or replace view prm_labels as
with source as (
    from _prm_labels_files
),
final as (
    select
        run_id,               -- run that labelled the samples (runs.run_id)
        trial_id,             -- sweep trial id; null outside sweeps
        iteration,            -- iterative-RL iteration whose policy was sampled and used as completer
        problem_id,           -- problem the solution answers
        solution_index,       -- the solution's index in its labelling call (key with run_id, iteration)
        step_index,           -- j: the step's index in the solution, 0-based
        step_text,            -- the step as written (one line for the default delimiter)
        prompt,               -- prompt the policy saw; prompt + steps joined by the delimiter = the solution
        hard,                 -- Math-Shepherd hard label: some continuation from this step reached the gold answer
        soft,                 -- soft label: the fraction of continuations that did
        exact,                -- exact label (steps 0..j all correct) where the task can check steps; else null
        n_completions,        -- N continuations sampled from the step prefix; 0 = last step, labelled by correctness
        completions_correct,  -- how many of the N reached the gold answer
        n_completions = 0 as is_last_step,  -- the answer line: hard = soft = the solution's verdict
        created_at            -- when the iteration's file was written (UTC)
    from source
)
select * from final
