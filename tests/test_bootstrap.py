"""The embedded policy: tokenizer round trip, deterministic and cached builds, SFT."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Qwen2Config

from grpo_core.policy import bootstrap
from grpo_core.policy.bootstrap import build_policy, build_tokenizer, is_built, policy_hash, read_info, save_tokenizer
from grpo_core.config import SyntheticTaskConfig, TaskConfig
from grpo_core.data.loaders import format_prompt
from grpo_core.data.synthetic import generate_splits
from grpo_core.policy.load import BOOTSTRAP_MARKER, load_policy
from tests.conftest import one_thread, tiny_config

VARIED_TEXTS = [
    "Question: Ann has 12 apples. Then Ann gets 345 more.\nAnswer:\n12 + 345 = 357\nThe answer is 357",
    "  two  spaces,\ttabs\t and trailing   ",
    "\n\nblank lines\n\n\nand a last line\n",
    "-42 * 3 = -126; 10 - 7 = 3!? (x) [y] {z} 'quoted' \"double\" it's we'll",
    "1234567890 0.5 3,000 1e10 #### 72 \\boxed{17} $x^2$",
    "caf\u00e9 na\u00efve \u00fcber \u4e2d\u6587 emoji \U0001f600 The answer is 7.",
]


@pytest.fixture(scope="module")
def trained_tokenizer():
    train, _ = generate_splits(SyntheticTaskConfig(n_train=128, n_test=8), seed=0)
    return build_tokenizer((t for p in train for t in (format_prompt(p, "Question: {question}\nAnswer:\n"),
                                                       p.solution)), 320)


def test_tokenizer_round_trips_through_autotokenizer_beside_a_qwen2_config(tmp_path, trained_tokenizer):
    save_tokenizer(trained_tokenizer, tmp_path)
    Qwen2Config(vocab_size=len(trained_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in VARIED_TEXTS:
        want = trained_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert loaded(text, add_special_tokens=False)["input_ids"] == want, text
        assert raw.encode(text, add_special_tokens=False).ids == want, text
        assert loaded.decode(want) == text
    assert (loaded.eos_token, loaded.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert loaded.eos_token_id == trained_tokenizer.eos_token_id
    assert loaded.pad_token_id == trained_tokenizer.pad_token_id != loaded.eos_token_id


def test_built_policy_dir_round_trips_through_autotokenizer(tiny_policy_dir):
    saved = Tokenizer.from_file(str(tiny_policy_dir / "tokenizer.json"))
    _, loaded = load_policy(tiny_policy_dir)
    for text in VARIED_TEXTS:
        assert loaded(text, add_special_tokens=False)["input_ids"] == saved.encode(text, add_special_tokens=False).ids


def test_digits_are_single_tokens(trained_tokenizer):
    for text in ["12345", " 907 + 11 = 918\n", "The answer is -3066"]:
        tokens = [trained_tokenizer.decode([i]) for i in trained_tokenizer(text, add_special_tokens=False)["input_ids"]]
        digits = [t for t in tokens if any(c.isdigit() for c in t)]
        assert digits == [c for c in text if c.isdigit()], tokens


def test_build_policy_is_deterministic_for_a_seed(tmp_path):
    def build(name, *extra):
        cfg = tiny_config(tmp_path / name, "model.sft_steps=15", *extra)
        with one_thread():
            return build_policy(cfg.model, cfg.task, progress=False)

    path_a, path_b = build("a"), build("b")
    assert path_a.name == path_b.name  # same config, same cache key
    a, b = load_policy(path_a)[0].state_dict(), load_policy(path_b)[0].state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (path_a / "tokenizer.json").read_text() == (path_b / "tokenizer.json").read_text()
    assert read_info(path_a)["sft_losses"] == read_info(path_b)["sft_losses"]
    c = load_policy(build("c", "model.seed=1"))[0].state_dict()
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])


def test_finished_policy_is_reused_without_training(tiny_cfg, tiny_policy_dir, monkeypatch):
    mtime = (tiny_policy_dir / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("build_policy trained again instead of reusing the cached policy")

    monkeypatch.setattr(bootstrap, "train_sft", no_training)
    again = tiny_cfg.model.model_copy(update={"sft_lr": tiny_cfg.model.sft_lr})  # equal config, new object
    assert build_policy(again, tiny_cfg.task, progress=False) == tiny_policy_dir
    assert (tiny_policy_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_unmarked_dir_is_rebuilt_and_cache_key_ignores_cache_dir(tmp_path):
    cfg = tiny_config(tmp_path, "model.sft_steps=5")
    name = f"tiny-qwen2-{policy_hash(cfg.model, cfg.task)}"
    (tmp_path / name).mkdir()  # a crash after the rename, before the marker
    (tmp_path / name / "junk").write_text("x")
    with one_thread():
        path = build_policy(cfg.model, cfg.task, progress=False)
    assert path == tmp_path / name and is_built(path) and not (path / "junk").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    other = cfg.model.model_copy(update={"cache_dir": tmp_path / "elsewhere"})
    assert policy_hash(other, cfg.task) == policy_hash(cfg.model, cfg.task)
    assert policy_hash(cfg.model.model_copy(update={"seed": 3}), cfg.task) != policy_hash(cfg.model, cfg.task)


def test_embeddings_are_untied(tiny_policy_dir):
    model, _ = load_policy(tiny_policy_dir)
    assert model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.get_input_embeddings().weight)


def test_load_policy_pads_left_with_a_pad_token_distinct_from_eos(tiny_policy_dir):
    model, tok = load_policy(tiny_policy_dir)
    assert not model.training
    assert tok.padding_side == "left"
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert (tiny_policy_dir / BOOTSTRAP_MARKER).is_file()
    enc = tok(["1 + 2", "a much longer prompt 1 + 2"], padding=True, add_special_tokens=False)
    assert enc["input_ids"][0][0] == tok.pad_token_id and enc["attention_mask"][0][0] == 0


def test_sft_lowers_the_loss(tiny_cfg, tiny_policy_dir):
    losses = read_info(tiny_policy_dir)["sft_losses"]
    assert len(losses) == tiny_cfg.model.sft_steps
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_real_data_source_asks_for_a_model_path(tmp_path, tiny_cfg):
    task = TaskConfig(source="gsm8k", train_path=tmp_path / "train.jsonl")
    with pytest.raises(ValueError, match="model.path"):
        build_policy(tiny_cfg.model, task, progress=False)
