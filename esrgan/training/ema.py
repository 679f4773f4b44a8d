"""Exponential moving average of the generator's weights (BasicSR's ``net_g_ema``)."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


class ModelEMA(Generic[M]):
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step.

    The averaged copy lives on the model's device, in eval mode, without gradients. Buffers
    (none in RRDBNet) are copied as they are.
    """

    def __init__(self, model: M, decay: float = 0.999) -> None:
        self.decay = decay
        self.module: M = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params: list[torch.Tensor] = list(self.module.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_buf.copy_(buf)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
