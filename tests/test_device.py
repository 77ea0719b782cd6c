"""Device placement and precision: the `device` resolver, run ids, and every model input on the configured device.

The placement tests run the trainer, the evaluator and the PRM on a simulated
accelerator (tests.helpers.sim_device): tensors on it say `meta` but hold CPU
values, and an op that mixes one with a CPU tensor raises, as CUDA does. So a
tensor created on the wrong device fails these tests on this CPU machine, and
code that places everything right computes exactly the plain CPU run's numbers,
which the tests compare. Every other test in the suite runs with device=cpu
(resolved from `auto` on this machine, the same run).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from grpo_core.config import ConfigError, ExperimentConfig, load_config
from grpo_core.device import autocast, device_kind, resolve_device
from grpo_core.maths.batch import pack, token_logprobs
from grpo_core.maths.loss import aggregate, per_token_loss
from grpo_core.pipeline import stages
from grpo_core.policy.load import load_policy, load_tokenizer
from grpo_core.rollout.base import SamplingParams
from grpo_core.rollout.hf import HFEngine
from grpo_core.store import Store
from grpo_core.store.records import RunKey
from grpo_core.training import trainer
from grpo_core.training.backend import check_same_device
from prm import score as prm_score
from prm.data import LabelledSolution
from prm.model import RewardModel
from prm.train import train as train_rm
from tests.helpers.sim_device import SIM, SimTensor, SimulatedDevice, WrongDevice, record_input_devices
from tests.test_trainer import train_problems, trainer_config

# ---------------------------------------------------------------- the resolver


@pytest.fixture
def two_gpus(monkeypatch):
    """This process sees two CUDA devices (resolve_device asks torch only whether and how many)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for key in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    assert device_kind("auto") == device_kind("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="device='cuda'.*no CUDA device.*device=cpu"):
        resolve_device("cuda")


def test_cuda_devices_are_parsed_and_checked(two_gpus):
    assert resolve_device("auto") == resolve_device("cuda") == resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert device_kind("auto") == device_kind("cuda:1") == "cuda"
    with pytest.raises(ValueError, match="device='cuda:2': this machine has 2 CUDA device"):
        resolve_device("cuda:2")


def test_each_rank_of_a_launch_takes_its_local_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_device("auto") == resolve_device("cuda") == resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="each rank takes cuda:LOCAL_RANK .here cuda:1.; set device=cuda"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0,1", ""])
def test_a_bad_device_names_the_knob(bad):
    with pytest.raises(ConfigError, match=r"device: .*use auto .*cpu, cuda or cuda:N"):
        load_config(None, [f"device={bad!r}"])
    with pytest.raises(ValueError, match=r"device=.*use auto .*cpu, cuda or cuda:N"):
        resolve_device(bad)


def test_deepspeed_engine_must_sit_where_the_models_were_placed():
    check_same_device(torch.device("cpu"), torch.device("cpu"))
    check_same_device(torch.device("cuda", 0), torch.device("cuda"))
    with pytest.raises(ValueError, match="DeepSpeed placed the policy on cuda:1.*models on cuda:0.*device=auto"):
        check_same_device(torch.device("cuda", 1), torch.device("cuda", 0))


# ---------------------------------------------------------------- run identity


def _hash_of_sections(cfg: ExperimentConfig, drop: tuple[str, ...]) -> str:
    """run_id_for written out: sha256 of the sorted-key JSON of the result sections, `drop` left out."""
    names = set(ExperimentConfig.result_sections()) - set(drop)
    payload = json.dumps(cfg.model_dump(mode="json", include=names), sort_keys=True)
    return f"{cfg.run_name}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def test_auto_and_cpu_are_one_run_on_a_cpu_machine_with_the_ids_of_runs_before_the_knobs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto, cpu = load_config(None, []), load_config(None, ["device=cpu"])
    assert stages.run_id_for(auto) == stages.run_id_for(cpu) == _hash_of_sections(auto, drop=("device", "precision"))
    bf16 = load_config(None, ["precision=bf16"])
    assert stages.run_id_for(bf16) != stages.run_id_for(cpu)
    hashed = ExperimentConfig.model_validate({**bf16.model_dump(mode="json"), "device": "cpu"})
    assert stages.run_id_for(bf16) == _hash_of_sections(hashed, drop=("device",))  # precision counts when it departs


def test_the_device_kind_counts_not_its_name(two_gpus):
    ids = {spec: stages.run_id_for(load_config(None, [f"device={spec}"])) for spec in ("auto", "cuda", "cuda:1", "cpu")}
    assert ids["auto"] == ids["cuda"] == ids["cuda:1"] != ids["cpu"]
    gpu = load_config(None, ["device=cuda:1"])
    hashed = ExperimentConfig.model_validate({**gpu.model_dump(mode="json"), "device": "cuda"})
    assert ids["cuda"] == _hash_of_sections(hashed, drop=("precision",))


# ---------------------------------------------------------------- placement


def test_loaders_place_every_parameter(tiny_policy_dir, tmp_path):
    model, _ = load_policy(tiny_policy_dir, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=True, device="meta")
    assert {p.device.type for p in rm.parameters()} == {"meta"} and rm.reference is not None
    assert {p.device.type for p in rm.reference.parameters()} == {"meta"}  # the frozen surprise reference too
    torch.manual_seed(0)
    RewardModel.from_pretrained(tiny_policy_dir, surprise=True).save(tmp_path / "rm")
    again = RewardModel.load(tmp_path / "rm", device="meta")
    assert {p.device.type for p in again.parameters()} == {"meta"} and again.reference is not None
    packed = pack([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0).to("meta")
    assert {t.device.type for t in (packed.input_ids, packed.attention_mask, packed.position_ids,
                                    packed.completion_ids, packed.completion_mask)} == {"meta"}


def test_the_simulated_device_catches_a_cpu_tensor(tiny_policy_dir):
    """The check the placement tests rely on: a CPU tensor meeting the device's fails, as on CUDA."""
    model, tok = load_policy(tiny_policy_dir)
    ids = torch.tensor([tok("Question: 1 + 1?", add_special_tokens=False)["input_ids"]])
    with SimulatedDevice():
        x = torch.zeros(3, device=SIM)
        assert isinstance(x, SimTensor) and x.device == SIM and (x + 1).tolist() == [1.0, 1.0, 1.0]
        assert (x.cpu() + torch.ones(3)).device.type == "cpu"  # moved back first: fine
        with pytest.raises(WrongDevice, match="aten.add"):
            x + torch.ones(3)
        model.to(SIM)
        with pytest.raises(WrongDevice):
            model(input_ids=ids)  # the batch left on the CPU
        assert model(input_ids=ids.to(SIM)).logits.shape[:2] == ids.shape


def _forward_devices_of(monkeypatch, module, name: str, seen: list[torch.device]) -> None:
    """Place what `module.name` (a loader) loads on SIM and record the devices of its forward inputs."""
    real = getattr(module, name)

    def placed(*args, **kwargs):
        out = real(*args, **kwargs)
        record_input_devices(out[0] if isinstance(out, tuple) else out, seen)
        return out

    monkeypatch.setattr(module, name, placed)


def test_the_trainer_puts_policy_reference_and_batches_on_the_device(tmp_path, tiny_policy_dir, monkeypatch):
    cfg = trainer_config(tmp_path, "grpo.steps=2", "grpo.minibatch_size=8", "grpo.beta=0.1", "grpo.lr=3e-3",
                         "reward.functions={tests.helpers.rewards:ones: 1.0}", "device=cpu")  # a reward with signal
    problems = train_problems(cfg)
    want = trainer.train_grpo(cfg, tiny_policy_dir, problems, Store(tmp_path / "cpu"), tmp_path / "cpu-run",
                              run_id="cpu").history
    seen: list[torch.device] = []
    monkeypatch.setattr(trainer, "resolve_device", lambda spec: SIM)
    _forward_devices_of(monkeypatch, trainer, "load_policy", seen)
    saved = []  # safetensors writes host memory: the simulated device's checkpoint is only counted
    monkeypatch.setattr("grpo_core.training.backend.checkpoint.save", lambda run_dir, step, *a, **k: saved.append(step))
    with SimulatedDevice():
        got = trainer.train_grpo(cfg, tiny_policy_dir, problems, Store(tmp_path / "sim"), tmp_path / "sim-run",
                                 run_id="sim").history
    assert seen and set(seen) == {SIM}  # policy (generation, pi_old, updates) and reference forwards
    assert saved == [2]
    for w, g in zip(want, got, strict=True):  # the same numbers up to rounding (torch picks other kernels
        # for a device it does not know: AdamW and the gradient clip go tensor by tensor, not foreach)
        for key in ("train/loss", "train/kl", "train/grad_norm", "rollout/reward_mean", "rollout/logprob_gap"):
            assert g[key] == pytest.approx(w[key], rel=1e-5, abs=1e-6), key


def test_the_evaluator_generates_on_the_device(tmp_path, tiny_policy_dir, monkeypatch):
    cfg = load_config(None, ["eval.n_problems=6", "eval.n_samples=2", "eval.k_max=2", "rollout.max_new_tokens=24",
                             "logging.progress=false"])
    _, test = stages.load_data(cfg)
    want = stages.evaluate_policy(cfg, tiny_policy_dir, test, Store(tmp_path / "cpu"), RunKey("cpu", None, 0, 0))
    seen: list[torch.device] = []
    monkeypatch.setattr(stages, "resolve_device", lambda spec: SIM)
    _forward_devices_of(monkeypatch, stages, "load_policy", seen)
    with SimulatedDevice():
        got = stages.evaluate_policy(cfg, tiny_policy_dir, test, Store(tmp_path / "sim"), RunKey("sim", None, 0, 0))
    assert seen and set(seen) == {SIM}
    assert [r["completion"] for r in got.rows] == [r["completion"] for r in want.rows]
    assert got.greedy_accuracy == want.greedy_accuracy and got.sample_accuracy == want.sample_accuracy


def _rollouts(tiny_policy_dir):
    model, tok = load_policy(tiny_policy_dir)
    prompts = ["Question: Ann has 3 apples and buys 4.\nAnswer:\n", "Question: 9 - 2 * 3?\nAnswer:\n"]
    return HFEngine(model, tok).generate(prompts, SamplingParams(n=3, max_new_tokens=24, seed=5)), tok


def test_the_prm_scores_on_the_device_with_its_reference(tmp_path, tiny_policy_dir, monkeypatch):
    batch, tok = _rollouts(tiny_policy_dir)
    torch.manual_seed(0)
    RewardModel.from_pretrained(tiny_policy_dir, surprise=True).save(tmp_path / "rm", tokenizer=tok)
    want, _ = prm_score.load_step_scorer(tmp_path / "rm", device="cpu")
    want_rewards, want_mask, want_ends = want(batch, [None] * len(batch))
    seen: list[torch.device] = []
    monkeypatch.setattr(prm_score, "resolve_device", lambda spec: SIM)
    real_load = RewardModel.load

    def load(path, *args, **kwargs):
        rm = real_load(path, *args, **kwargs)
        record_input_devices(rm.backbone, seen)
        record_input_devices(rm.reference, seen)
        return rm

    monkeypatch.setattr(RewardModel, "load", staticmethod(load))
    with SimulatedDevice():
        scorer, _ = prm_score.load_step_scorer(tmp_path / "rm", device="cpu")
        rewards, mask, ends = scorer(batch, [None] * len(batch))
    assert len(seen) >= 2 and set(seen) == {SIM}  # backbone and frozen reference
    assert rewards.device.type == "cpu" and torch.equal(mask, want_mask) and torch.equal(ends, want_ends)
    torch.testing.assert_close(rewards, want_rewards, rtol=1e-6, atol=1e-7)


def test_prm_training_runs_on_the_device(tiny_policy_dir):
    """fit_head's logistic regression (on the CPU) and the fine-tuning steps with the RM on the device."""
    tok = load_tokenizer(tiny_policy_dir)
    sols = [LabelledSolution((None, None, "p", i), f"p{i}", "Question: 2 + 3?\nAnswer:\n",
                             ["2 + 3 = 5", f"The answer is {5 + i % 2}"], [True, i % 2 == 0], [1.0, float(i % 2 == 0)],
                             [None, None]) for i in range(6)]
    cfg = load_config(None, ["prm.epochs=2", "prm.batch_size=4"]).prm
    heads = []
    for device in ("cpu", SIM):
        torch.manual_seed(0)
        with SimulatedDevice():
            rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=True, device=device)
            metrics = train_rm(rm, tok, sols, sols[:2], cfg, delimiter="\n")
            heads.append((rm.head.weight.detach().cpu(), metrics[2]["prm/eval_loss"]))
    (w_cpu, loss_cpu), (w_sim, loss_sim) = heads
    torch.testing.assert_close(w_sim, w_cpu, rtol=1e-4, atol=1e-4)  # L-BFGS and AdamW amplify rounding a little
    assert loss_sim == pytest.approx(loss_cpu, rel=1e-5)


# ---------------------------------------------------------------- precision

# bf16 keeps 8 bits of mantissa (relative rounding 2^-9); through the tiny policy's few layers its
# log-probs stay within BF16_LOGP_ATOL nats of fp32's, and the GRPO loss (~1e-3 on this batch)
# within BF16_LOSS_ATOL: the stated tolerance of bf16 autocast on the CPU.
BF16_LOGP_ATOL = 0.05
BF16_LOSS_ATOL = 2e-4


def test_bf16_autocast_leaves_the_loss_path_fp32_and_close(tiny_policy_dir):
    batch, tok = _rollouts(tiny_policy_dir)
    packed = pack(batch.prompt_ids, batch.completion_ids, tok.pad_token_id)
    mask = packed.completion_mask
    adv = torch.linspace(-1.0, 1.0, len(batch)).view(-1, 1) * mask  # (N, T)
    ref, _ = load_policy(tiny_policy_dir)
    with torch.no_grad():  # a reference that differs from the policy, so the k3 KL term is not zero
        for p in ref.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    out = {}
    for precision in ("fp32", "bf16"):
        model, _ = load_policy(tiny_policy_dir)
        with autocast(torch.device("cpu"), precision):
            logp = token_logprobs(model, packed)
            with torch.no_grad():
                ref_logp = token_logprobs(ref, packed)
        per_tok, stats = per_token_loss(logp, logp.detach() - 0.05 * mask, ref_logp, adv, beta=0.04, epsilon=0.2)
        loss = aggregate(per_tok, mask, "seq_mean_token_mean")
        assert logp.dtype == ref_logp.dtype == per_tok.dtype == loss.dtype == torch.float32
        loss.backward()
        out[precision] = (logp.detach(), float(loss.detach()), stats["kl"])
    (lp32, loss32, kl32), (lp16, loss16, kl16) = out["fp32"], out["bf16"]
    assert not torch.equal(lp16, lp32)  # autocast did run the matmuls in bf16
    assert ((lp16 - lp32).abs() * mask).max() <= BF16_LOGP_ATOL
    assert abs(loss16 - loss32) <= BF16_LOSS_ATOL
    assert kl32[mask.bool()].mean() > 0 and kl16.dtype == torch.float32


# ---------------------------------------------------------------- on a real GPU (bench/gpu_check.sh runs these)

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_LOSS_ATOL = 1e-4  # fp32 on both (TF32 off, PyTorch's default for matmuls): kernels differ only in rounding


@cuda_only
def test_on_cuda_the_models_get_only_cuda_tensors_and_the_loss_matches_the_cpu(tmp_path, tiny_policy_dir, monkeypatch):
    cfg = trainer_config(tmp_path, "grpo.steps=1", "grpo.beta=0.1", "device=cuda")
    seen: list[torch.device] = []
    _forward_devices_of(monkeypatch, trainer, "load_policy", seen)
    trainer.train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(tmp_path / "store"), tmp_path / "run",
                       run_id="cuda")
    assert seen and {d.type for d in seen} == {"cuda"}
    batch, tok = _rollouts(tiny_policy_dir)  # the same rollouts for both devices (CUDA draws other samples)
    losses = []
    for device in ("cpu", "cuda"):
        model, _ = load_policy(tiny_policy_dir, device=device)
        packed = pack(batch.prompt_ids, batch.completion_ids, tok.pad_token_id).to(device)
        adv = torch.linspace(-1.0, 1.0, len(batch), device=device).view(-1, 1) * packed.completion_mask
        logp = token_logprobs(model, packed)
        per_tok, _ = per_token_loss(logp, logp.detach() - 0.05, logp.detach() + 0.1, adv, beta=0.04, epsilon=0.2)
        losses.append(float(aggregate(per_tok, packed.completion_mask, "seq_mean_token_mean")))
    assert losses[1] == pytest.approx(losses[0], abs=GPU_LOSS_ATOL)
