-- global_step(iteration, step, steps_per_iteration): GRPO steps since a run began, so runs line up
-- at equal training across iterations. Steps restart at 1 in every iteration of M steps, and the
-- evaluation before RL is (iteration 0, step 0): global_step = (iteration - 1) * M + step, and 0
-- before RL. A null M (a config without grpo.steps) counts as 0, leaving step as it is.
-- Usage: select global_step(2, 5, 60)  -- 65
create or replace macro global_step(iteration, step, steps_per_iteration) as
    greatest(iteration - 1, 0) * coalesce(steps_per_iteration, 0) + step
