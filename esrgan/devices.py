"""Turning a device name from a config or a command line into a ``torch.device`` that exists here."""

from __future__ import annotations

import torch

from esrgan.errors import EsrganError


class DeviceError(EsrganError, ValueError):
    """A device this machine does not have, or a name torch does not know."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when available, else CPU; any other name must exist on this machine.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        local_rank: the CUDA device a bare ``cuda`` (or ``auto``) means: a torchrun rank's own GPU.

    Raises:
        DeviceError: an unknown device type (``tpu``), or CUDA/MPS that this machine lacks; the
            message starts with the name and says what to use instead.
    """
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{name}: unknown device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{name}: CUDA is not available on this machine; use cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"{name}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise DeviceError(f"{name}: unsupported device type {dev.type!r}; use auto, cpu, cuda or mps")
    return dev
