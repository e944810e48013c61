"""A stand-in for a GPU on a CPU-only machine, to test that code keeps its tensors on one device.

Tensors "on the other device" are :class:`OtherDevice` wrappers: they report the device
``meta`` (a device type every torch build has, with nothing to initialise) and hold an ordinary
CPU tensor that does the arithmetic, so every result is the same bits as on the CPU. Inside
:class:`other_device`:

- ``tensor.to(DEVICE)``, ``tensor.cuda()`` and factory functions given ``device=DEVICE`` make
  wrappers; ``.cpu()`` / ``.to("cpu")`` turn them back into plain tensors;
- an operation that mixes a wrapper with a plain CPU tensor of one or more dimensions raises, as
  CUDA does (``Expected all tensors to be on the same device``), except the cases CUDA allows:
  0-dimensional CPU tensors as scalars, CPU integer or boolean tensors as indices, and copies
  between devices;
- like CUDA, a wrapper cannot become a numpy array.

``SEEN`` counts the operations that ran on the other device, so a test can check that the heavy
passes really went there; ``SYNCS`` counts those that would make the host wait for a GPU (a value
read to the host: ``.item()``, ``bool()``, ``.cpu()``, a copy to a CPU tensor; and the operations
whose output size depends on the data: ``nonzero``, boolean-mask indexing, ``unique``...).

This checks where tensors live, not GPU numerics: a real GPU sums in another order (the CUDA tests
compare with a tolerance where a GPU is present).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

#: the device the wrappers report
DEVICE = torch.device("meta")

#: operations run on the other device (the aten overload packet names), since the last reset
SEEN: Counter = Counter()

#: operations that would make the host wait for a GPU, since the last reset
SYNCS: Counter = Counter()

#: operations whose output size depends on the data (CUDA must wait to learn it)
_SIZE_FROM_DATA = frozenset({"nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_consecutive",
                             "unique_dim", "repeat_interleave"})


class DeviceMismatch(RuntimeError):
    """A plain CPU tensor met a tensor on the other device in one operation."""


class OtherDevice(torch.Tensor):
    """A CPU tensor that reports :data:`DEVICE` (see the module docstring)."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        r = torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            device=DEVICE, requires_grad=elem.requires_grad)
        r.elem = elem
        return r

    def __repr__(self) -> str:
        return f"OtherDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        SEEN[name] += 1
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if name == "_to_copy":
            dev = kwargs.get("device")
            out = func(args[0].elem, **{**kwargs, "device": torch.device("cpu")})
            if dev is not None and torch.device(dev).type == "cpu":
                SYNCS[name] += 1
                return out
            return OtherDevice(out)
        if name == "_local_scalar_dense" or name in _SIZE_FROM_DATA or \
                (name == "copy_" and not isinstance(args[0], OtherDevice)) or \
                (name.startswith("index") and any(a.dtype == torch.bool for a in tensors[1:])):
            SYNCS[name] += 1
        for a in tensors:
            if isinstance(a, OtherDevice) or a.dim() == 0 or name in ("copy_", "copy"):
                continue
            if name.startswith("index") and not a.is_floating_point():
                continue
            raise DeviceMismatch(f"{func}: a CPU tensor of shape {tuple(a.shape)} met a tensor on the other device")
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if func._schema.name.endswith("_") or (name == "copy_"):
            return args[0]  # in place: the (possibly plain) destination itself
        if "out" in kwargs:
            return kwargs["out"]
        return tree_map(lambda a: OtherDevice(a) if type(a) is torch.Tensor else a, out)

    def numpy(self, *args, **kwargs):  # noqa: ARG002 - as CUDA: no numpy view of device memory
        raise TypeError("can't convert a tensor on the other device to numpy; use .cpu() first")


def _unwrap(a):
    return a.elem if isinstance(a, OtherDevice) else a


def _is_other(dev) -> bool:
    return isinstance(dev, (str, torch.device)) and torch.device(dev).type in (DEVICE.type, "cuda")


class other_device(TorchFunctionMode):
    """Inside the block, :data:`DEVICE` (and ``"cuda"``) name the other device (module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist and isinstance(args[0], OtherDevice):  # a read to the host
            SYNCS["tolist"] += 1
            return args[0].elem.tolist()
        if _is_other(kwargs.get("device")):
            return OtherDevice(func(*args, **{**kwargs, "device": "cpu"}))
        if func is torch.where and any(isinstance(a, OtherDevice) for a in args):
            # torch makes a Python number into a tensor on the device of the others, which on the
            # stand-in device would carry no value: give it as a CPU scalar (CUDA accepts those)
            args = tuple(torch.tensor(a) if isinstance(a, (bool, int, float)) else a for a in args)
        if func in (torch.Tensor.to, torch.Tensor.cuda) and not isinstance(args[0], OtherDevice):
            target = [a for a in (*args[1:], *kwargs.values()) if isinstance(a, (str, torch.device))]
            if func is torch.Tensor.cuda or (target and _is_other(target[0])):
                dtype = next((a for a in (*args[1:], *kwargs.values()) if isinstance(a, torch.dtype)), None)
                x = args[0] if dtype is None else args[0].to(dtype)
                return OtherDevice(x.detach().clone())
        return func(*args, **kwargs)
