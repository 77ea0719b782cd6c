-- prm_labels: the stored Math-Shepherd step labels plus is_last_step. analysis/catalog.py defines
-- _prm_labels_files over the files, and comments the stored columns from grpo_core.store.tables.PRM_LABELS.
create or replace view prm_labels as
with source as (
    from _prm_labels_files
),
final as (
    select
        run_id,
        trial_id,
        iteration,
        problem_id,
        solution_index,
        step_index,
        step_text,
        prompt,
        hard,
        soft,
        exact,
        n_completions,
        completions_correct,
        n_completions = 0 as is_last_step,
        created_at
    from source
)
select * from final;
comment on column prm_labels.is_last_step is 'the answer line (n_completions = 0): hard = soft = the solution''s verdict';
