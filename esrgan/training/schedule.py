"""Learning-rate schedules as pure functions of the iteration (nanoGPT's ``get_lr`` style).

No scheduler object carries state: the learning rate of iteration ``step`` (0-based: the number
of optimizer steps already taken) is computed from the config, so resuming only needs ``step``.
``multistep`` reproduces ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per iteration:
after ``m`` completed iterations, for each milestone ``m``, the rate is multiplied by ``gamma``.
"""

from __future__ import annotations

import bisect
import math

from torch.optim import Optimizer

from esrgan.training.config import ScheduleConfig


def lr_at(step: int, base_lr: float, schedule: ScheduleConfig, total: int) -> float:
    """Learning rate for the iteration that follows ``step`` completed iterations of ``total``."""
    if schedule.kind == "constant":
        return base_lr
    if schedule.kind == "multistep":
        return base_lr * schedule.gamma ** bisect.bisect_right(schedule.milestones, step)
    if schedule.kind == "step":
        assert schedule.step_size is not None
        return base_lr * schedule.gamma ** (step // schedule.step_size)
    # cosine: from base_lr at step 0 to eta_min at step == total
    progress = min(step, total) / total
    return schedule.eta_min + (base_lr - schedule.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
