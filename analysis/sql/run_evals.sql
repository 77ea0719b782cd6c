-- run_evals: the evaluations (view evals) with each run's supervision and the global step of
-- run_curves: 0 before RL (iteration 0), i * M after iteration i of M steps.
-- Usage: select iteration, global_step, greedy_accuracy from run_evals where run_id = 'default-32decf95'
create or replace view run_evals as
with source as (
    select evals.*, run_info.supervision, run_info.steps_per_iteration
    from evals
    left join run_info using (run_id)
),
final as (
    select
        * exclude (steps_per_iteration),  -- every column of evals, and supervision (run_info.supervision)
        global_step(iteration, step, steps_per_iteration) as global_step  -- GRPO steps before this evaluation
    from source
)
select * from final
