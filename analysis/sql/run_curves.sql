-- run_curves: the training curves (view curves) with each run's supervision and a global step that
-- runs on across iterations, so runs line up at equal numbers of GRPO steps (Fig. 5 and 6).
-- Steps restart at 1 in every iteration; global_step = (iteration - 1) * M + step (macro global_step),
-- with M the run's grpo.steps (run_info.steps_per_iteration).
-- Usage: select global_step, accuracy, kl_mean from run_curves where run_id = 'default-32decf95' order by 1
create or replace view run_curves as
with source as (
    select curves.*, run_info.supervision, run_info.steps_per_iteration
    from curves
    left join run_info using (run_id)
),
final as (
    select
        * exclude (steps_per_iteration),  -- every column of curves, and supervision: the run's
                                          -- 'outcome' or 'process' (run_info.supervision)
        global_step(iteration, step, steps_per_iteration) as global_step  -- GRPO steps since the run began
    from source
)
select * from final
