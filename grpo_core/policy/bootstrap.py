"""The embedded policy: the tiny model every default run starts from.

    path = build_policy(cfg.model, cfg.task)   # local HF model dir, built once, then reused

Built on the spot, offline, in a few minutes on a laptop CPU:
1. a byte-level BPE tokenizer trained on the synthetic train split (prompts and
   gold solutions), digits always single tokens so arithmetic is learnable;
2. a small Qwen2ForCausalLM (untied embeddings: vLLM on CPU keeps a stale
   lm_head after weight syncs when they are tied, see DEPENDENCIES.md);
3. SFT on prompt + target + EOS, loss on the target tokens only (AdamW,
   linear warmup then cosine decay), deterministic for `model.seed`.

The targets mix two answer styles, as instruction data does: the worked gold
solution (one equation a line), or for a `model.sft_direct_fraction` share of
the problems only its last line, "The answer is N". The policy so answers
directly part of the time, and less accurately than when it works the problem,
so its greedy accuracy lags its majority vote: the gap that RL closes in the
paper (Sec. 5.2.2, Figure 7: Maj@K up, Pass@K not). With the fraction 0 every
target is worked and the policy's errors sit inside arithmetic steps; with many
SFT steps such a policy is right so often that RL has little left to do. The
README reports what the default policy scores.

Cache: the dir is `model.cache_dir/tiny-qwen2-<hash of model and task config and of
the source of the modules in BUILT_BY>`.
It is built in a temp dir, renamed into place atomically, and only then gets
its marker file; a dir without the marker (a crash between the two) is rebuilt.
A lock file serialises concurrent builders of the same policy.

Tokenizer note. transformers 5.x `AutoTokenizer` ignores `tokenizer_class` for
a `qwen2` config (it is listed in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS)
and always builds a `Qwen2Tokenizer`, which keeps the saved vocab and merges
but re-creates its own normaliser (NFC) and pre-tokeniser (the Qwen2 split
regex + ByteLevel without regex). A tokenizer trained with any other
pre-tokeniser (e.g. Digits + ByteLevel) would be silently re-tokenised. So the
tokenizer is trained with exactly that pipeline: the regex's `\\p{N}` branch
already isolates every digit. `tokenizer_config.json` still names
`PreTrainedTokenizerFast`, so loaders that read it rebuild the same thing from
`tokenizer.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from transformers.utils import logging as hf_logging

from grpo_core.config import ModelConfig, TaskConfig
from grpo_core.data.loaders import format_prompt
from grpo_core.data.problem import Problem
from grpo_core.data.synthetic import generate_splits
from grpo_core.policy.load import BOOTSTRAP_MARKER
from grpo_core.provenance import modules_digest
from grpo_core.training.schedule import lr_multiplier

# The modules whose code builds the policy: an edit to any of them builds a new one (see policy_hash).
BUILT_BY = ("grpo_core.policy.bootstrap", "grpo_core.data.synthetic", "grpo_core.data.loaders",
            "grpo_core.training.schedule")
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
INFO_FILE = "bootstrap.json"  # config, hash, per-step SFT losses, parameter count, timings
WARMUP_FRACTION = 0.05  # share of SFT steps with linear warmup
MIN_LR_RATIO = 0.1  # cosine decays to this fraction of the peak lr
ADAM_BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.01
GRAD_CLIP = 1.0

# Qwen2Tokenizer's pre-tokenisation regex (transformers/models/qwen2/tokenization_qwen2.py).
# `\p{N}` matches one digit: every digit is its own pre-token, so its own token.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# ----------------------------------------------------------------------------- tokenizer


def build_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; EOS `<|endoftext|>` (id 0), pad `<|pad|>` (id 1)."""
    tok = Tokenizer(
        models.BPE(
            dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
            fuse_unk=False, byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=EOS_TOKEN
    )


def save_tokenizer(tok: PreTrainedTokenizerFast, path: Path) -> None:
    """`save_pretrained`, with `tokenizer_class` "PreTrainedTokenizerFast" in tokenizer_config.json."""
    tok.save_pretrained(path)
    cfg_file = Path(path) / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")


# ----------------------------------------------------------------------------- cache


def policy_hash(model_cfg: ModelConfig, task_cfg: TaskConfig) -> str:
    """Hash of everything that changes the built policy (not where it is cached): its config and the
    source of the modules that build it, so a cached policy is never one that other code built."""
    key = {
        "code": modules_digest(BUILT_BY),
        "model": model_cfg.model_dump(mode="json", exclude={"path", "cache_dir"}),
        "task": task_cfg.model_dump(mode="json", exclude={"train_path", "test_path", "skip_bad_rows"}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def is_built(path: Path) -> bool:
    """True if `path` holds a finished embedded policy."""
    return (Path(path) / BOOTSTRAP_MARKER).is_file()


def read_info(path: Path) -> dict:
    """The build record of an embedded policy (config, SFT losses, parameter count, timings)."""
    return json.loads((Path(path) / INFO_FILE).read_text())


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders may both train; rename still safe
        yield
        return
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- data


def sft_solutions(problems: list[Problem], direct_fraction: float, seed: int) -> list[str]:
    """The SFT target of each problem: its worked gold solution, or for a seeded
    `direct_fraction` of them only its last line ("The answer is N")."""
    rng = random.Random(seed)
    direct = set(rng.sample(range(len(problems)), round(direct_fraction * len(problems))))
    return [p.solution.splitlines()[-1] if i in direct else p.solution for i, p in enumerate(problems)]


def encode_examples(
    tok: PreTrainedTokenizerFast, problems: list[Problem], targets: list[str], template: str
) -> list[tuple[list[int], int]]:
    """(prompt ids + target ids + EOS, prompt length) per problem and its SFT target.

    Prompt and target are encoded separately, exactly as a rollout sees them:
    the prompt alone, then generated tokens after it.
    """
    prompts = tok([format_prompt(p, template) for p in problems], add_special_tokens=False)["input_ids"]
    target_ids = tok(targets, add_special_tokens=False)["input_ids"]
    return [(pr + ta + [tok.eos_token_id], len(pr)) for pr, ta in zip(prompts, target_ids)]


def _collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on prompt and pad tokens (loss on the solution only)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)  # (B, T)
    for i, (ids, n_prompt) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ----------------------------------------------------------------------------- model and SFT


def make_model(model_cfg: ModelConfig, tok: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A freshly initialised Qwen2 (seeded by `model_cfg.seed`) with untied embeddings."""
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=model_cfg.hidden_size,
        intermediate_size=4 * model_cfg.hidden_size,
        num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads,
        num_key_value_heads=model_cfg.num_heads,
        max_position_embeddings=model_cfg.max_positions,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(model_cfg.seed)
    return Qwen2ForCausalLM(config)


def train_sft(
    model: Qwen2ForCausalLM,
    examples: list[tuple[list[int], int]],
    model_cfg: ModelConfig,
    pad_id: int,
    *,
    progress: bool = True,
) -> list[float]:
    """SFT on the gold solutions; returns the loss (mean solution-token NLL) of every step."""
    gen = torch.Generator().manual_seed(model_cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=model_cfg.sft_lr, betas=ADAM_BETAS,
    )
    total = model_cfg.sft_steps
    warmup = max(1, int(WARMUP_FRACTION * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier("cosine", warmup, total, floor=MIN_LR_RATIO))
    bs = min(model_cfg.sft_batch_size, len(examples))
    order: list[int] = []
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=model_cfg.sft_steps, desc="bootstrap SFT", unit="step", dynamic_ncols=True)
    model.train()
    for step in range(model_cfg.sft_steps):
        if len(order) < bs:  # a fresh seeded permutation each epoch
            order += torch.randperm(len(examples), generator=gen).tolist()
        idx, order = order[:bs], order[bs:]
        batch = _collate([examples[i] for i in idx], pad_id)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == model_cfg.sft_steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
    if bar is not None:
        bar.close()
    model.eval()
    return losses


# ----------------------------------------------------------------------------- build


def build_policy(model_cfg: ModelConfig, task_cfg: TaskConfig, *, progress: bool = True) -> Path:
    """Return the dir of the embedded policy for these configs, building it if not cached."""
    if task_cfg.source != "synthetic":
        raise ValueError(
            f"the embedded policy is built for the synthetic task only (task.source={task_cfg.source!r}): "
            "set model.path to a local HF model dir (e.g. a downloaded Qwen2.5-Math checkpoint) "
            "to train on real data sets"
        )
    cache_dir = Path(model_cfg.cache_dir)
    name = f"tiny-qwen2-{policy_hash(model_cfg, task_cfg)}"
    final = cache_dir / name
    if is_built(final):
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{name}.lock"):
        if is_built(final):  # another process finished it while we waited
            return final
        tmp = cache_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _build_into(tmp, model_cfg, task_cfg, progress=progress)
            if final.exists():  # renamed but unmarked: a crash mid-publish, rebuild it
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (final / BOOTSTRAP_MARKER).write_text(name + "\n")
    return final


def _build_into(path: Path, model_cfg: ModelConfig, task_cfg: TaskConfig, *, progress: bool) -> None:
    t0 = time.perf_counter()
    train, _ = generate_splits(task_cfg.synthetic, task_cfg.seed)
    template = task_cfg.prompt_template
    targets = sft_solutions(train, model_cfg.sft_direct_fraction, model_cfg.seed)
    tok = build_tokenizer(
        (text for p, t in zip(train, targets) for text in (format_prompt(p, template), t)), model_cfg.vocab_size
    )
    examples = encode_examples(tok, train, targets, template)
    longest = max(len(ids) for ids, _ in examples)
    if longest > model_cfg.max_positions:
        raise ValueError(
            f"a training example has {longest} tokens but model.max_positions is {model_cfg.max_positions}: "
            "raise model.max_positions or make the synthetic problems shorter"
        )
    model = make_model(model_cfg, tok)
    t_sft = time.perf_counter()
    losses = train_sft(model, examples, model_cfg, tok.pad_token_id, progress=progress)
    t_done = time.perf_counter()
    path.mkdir(parents=True)
    bars_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()  # transformers' "Writing model shards" bar
    try:
        model.save_pretrained(path)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    save_tokenizer(tok, path)
    info = {
        "code": modules_digest(BUILT_BY),
        "hash": policy_hash(model_cfg, task_cfg),
        "model": model_cfg.model_dump(mode="json"),
        "task": task_cfg.model_dump(mode="json"),
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "n_train_examples": len(examples),
        "longest_example_tokens": longest,
        "setup_seconds": round(t_sft - t0, 3),
        "sft_seconds": round(t_done - t_sft, 3),
        "sft_losses": losses,
    }
    (path / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
