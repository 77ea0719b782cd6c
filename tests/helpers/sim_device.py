"""A simulated accelerator for CPU-only tests: tensors that say they live on `meta` but hold CPU data.

    with SimulatedDevice():
        model = model.to(SIM)                  # parameters become SimTensors (device 'meta', real values)
        x = torch.zeros(3, device=SIM)         # so does every tensor created or moved onto SIM
        model(x)                               # runs, on the CPU, with the values a GPU would compute
        x + torch.ones(3)                      # raises WrongDevice, as CUDA raises for a CPU operand

Under the mode every op whose operands include a SimTensor (or that is asked to
create one, `device=SIM`) runs on the unwrapped CPU data and wraps its outputs
again; `.cpu()` / `.to("cpu")` return plain CPU tensors, as a device-to-host copy
does. An op mixing a SimTensor with a plain CPU tensor of one or more dimensions
raises WrongDevice, the error CUDA gives; CUDA's exceptions are kept: 0-dim CPU
tensors (scalars), CPU index tensors in indexing and copies between devices. So code that creates a
tensor without `device=` and hands it to the model or to a device tensor fails
here as it would on a GPU, while correct code computes exactly the CPU numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

SIM = torch.device("meta")
aten = torch.ops.aten
# CUDA accepts a CPU operand in these: index tensors in indexing (the index moves to the device), and
# the source of a copy into a device tensor (`x[i] = cpu_values`, `param.copy_(cpu_values)`).
CROSS_DEVICE_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                    aten._index_put_impl_.default, aten.copy_.default}


class WrongDevice(RuntimeError):
    """A CPU tensor met a device tensor in one op (on a GPU: 'Expected all tensors to be on the same device')."""


class SimTensor(torch.Tensor):
    """A tensor reporting device `meta` whose values live in the CPU tensor `cpu_data`."""

    cpu_data: torch.Tensor

    @staticmethod
    def __new__(cls, data: torch.Tensor) -> SimTensor:
        out = torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(), dtype=data.dtype,
                                                  device=SIM, requires_grad=data.requires_grad,
                                                  storage_offset=data.storage_offset())
        out.cpu_data = data
        return out

    def __repr__(self) -> str:  # type: ignore[override]
        return f"SimTensor({self.cpu_data!r})"

    def tolist(self) -> Any:  # type: ignore[override]  (a device-to-host copy, as on CUDA)
        return self.cpu_data.tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001
        return _run(func, args, kwargs or {})


def _on_sim(device: Any) -> bool:
    return device is not None and torch.device(device).type == SIM.type


def _adopt_meta(a: Any) -> Any:
    """A plain (empty) meta tensor some library made as a placeholder becomes an empty SimTensor."""
    if isinstance(a, torch.Tensor) and not isinstance(a, SimTensor) and a.device.type == SIM.type:
        if a.numel():
            raise RuntimeError(f"a plain meta tensor of shape {tuple(a.shape)} holds no values")
        return SimTensor(torch.empty(a.shape, dtype=a.dtype))
    return a


def _run(func, args: tuple, kwargs: dict) -> Any:  # noqa: ANN001
    args, kwargs = tree_map(_adopt_meta, (args, kwargs))
    flat, _ = tree_flatten((args, kwargs))
    on_device = any(isinstance(a, SimTensor) for a in flat)
    cpu_operands = [a for a in flat if isinstance(a, torch.Tensor) and not isinstance(a, SimTensor) and a.dim() > 0]
    if on_device and cpu_operands and func not in CROSS_DEVICE_OPS:
        raise WrongDevice(f"{func}: CPU tensor(s) of shape {[tuple(a.shape) for a in cpu_operands]} "
                          "in an op on the device's tensors")
    wrap = on_device
    if "device" in kwargs and kwargs["device"] is not None:
        wrap = _on_sim(kwargs["device"])  # created on (or copied to) SIM, or copied to the CPU
        if wrap:
            kwargs = {**kwargs, "device": torch.device("cpu")}
    args, kwargs = tree_map(lambda a: a.cpu_data if isinstance(a, SimTensor) else a, (args, kwargs))
    out = func(*args, **kwargs)
    return tree_map(lambda o: SimTensor(o) if isinstance(o, torch.Tensor) else o, out) if wrap else out


class SimulatedDevice(TorchDispatchMode):
    """While active, tensors created or moved onto SIM are SimTensors (see the module docstring)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if _on_sim(kwargs.get("device")) or any(isinstance(a, torch.Tensor) and a.device.type == SIM.type
                                                 for a in flat):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


def record_input_devices(module: torch.nn.Module, seen: list[torch.device]) -> None:
    """Append the device of every tensor handed to `module`'s forward (positional or keyword) to `seen`."""

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        flat, _ = tree_flatten((args, kwargs))
        seen.extend(a.device for a in flat if isinstance(a, torch.Tensor))

    module.register_forward_pre_hook(hook, with_kwargs=True)
