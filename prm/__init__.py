"""Process (and outcome) reward models for GRPO with process supervision (DeepSeekMath Sec. 4.1.3).

    label     Math-Shepherd hard/soft step labels, the policy as completer; exact labels where checkable
    data      label rows -> checked, grouped LabelledSolutions; label files (JSONL, Parquet)
    batch     token ids and step-tag read positions, packed for the model
    model     RewardModel: causal-LM backbone + linear head at the read positions (+ the step's token
              surprise under a frozen reference LM); save/load
    train     BCE training with replay (mix_replay), held-out accuracy and ROC AUC
    score     the trainer's StepScorer; Math-Shepherd solution scores (minimum step score)
    pipeline  label_policy_samples / train_reward_model: what the iterative flow calls
"""
