-- outcome_vs_process(run_ids := null): outcome and process supervision side by side at equal GRPO
-- steps (Fig. 5), one row per global step that runs of both supervisions reached. Each side is the
-- mean over its runs (of run_ids; null = every run in the store). Training accuracy comes from
-- run_curves (every step), greedy and sampled accuracy from run_evals (the steps evaluated; null
-- between evaluations): accuracy, not reward, so runs whose rewards are built differently still compare.
-- Usage: select * from outcome_vs_process(['default-32decf95', 'default-1043a156']) order by global_step
create or replace macro outcome_vs_process(run_ids := null) as table
with chosen_curves as (
    select supervision, global_step, run_id, accuracy
    from run_curves
    where run_ids is null or list_contains(run_ids, run_id)
),
chosen_evals as (
    select supervision, global_step, run_id, greedy_accuracy, sample_accuracy
    from run_evals
    where run_ids is null or list_contains(run_ids, run_id)
),
train as (  -- one row per (supervision, global step) trained
    select supervision, global_step, count(distinct run_id) as n_runs, avg(accuracy) as train_accuracy
    from chosen_curves
    group by all
),
evaluated as (  -- one row per (supervision, global step) evaluated
    select supervision, global_step, count(distinct run_id) as n_runs,
           avg(greedy_accuracy) as greedy_accuracy, avg(sample_accuracy) as sample_accuracy
    from chosen_evals
    group by all
),
sides as (
    select
        supervision, global_step,
        greatest(train.n_runs, evaluated.n_runs) as n_runs,
        train.train_accuracy, evaluated.greedy_accuracy, evaluated.sample_accuracy
    from train
    full outer join evaluated using (supervision, global_step)
),
final as (
    select
        global_step,                                           -- GRPO steps since the runs began
        o.n_runs as outcome_runs,                              -- outcome-supervised runs at this step
        p.n_runs as process_runs,                              -- process-supervised runs at this step
        o.train_accuracy as outcome_train_accuracy,            -- share of train completions judged correct
        p.train_accuracy as process_train_accuracy,
        o.greedy_accuracy as outcome_greedy_accuracy,          -- held-out greedy accuracy; null if not evaluated here
        p.greedy_accuracy as process_greedy_accuracy,
        o.sample_accuracy as outcome_sample_accuracy,          -- held-out accuracy of the samples at temperature
        p.sample_accuracy as process_sample_accuracy,
        p.greedy_accuracy - o.greedy_accuracy as greedy_gap    -- process minus outcome, greedy accuracy
    from (from sides where supervision = 'outcome') as o
    join (from sides where supervision = 'process') as p using (global_step)
)
select * from final
