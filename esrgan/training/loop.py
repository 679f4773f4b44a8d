"""The ESRGAN training loop, both stages, readable top to bottom.

Public entry points:

* :func:`train_psnr` - stage 1, L1 only, RRDBNet from scratch;
* :func:`train_gan` - stage 2, G initialised from the stage-1 generator file, D from scratch;
* :func:`train` - either, by name.

Outputs in ``out_dir``:

* ``generator.pth`` - final G weights (``esrgan.save_generator`` format; ``load_generator`` reads it);
* ``generator_ema.pth`` - EMA weights when ``ema.enabled`` (then the one to use downstream,
  :attr:`TrainResult.final_generator_path`; validation also scores this one);
* ``discriminator.pth`` - D's state dict (GAN stage);
* ``checkpoints/iter_XXXXXXXX.pth`` - resumable checkpoints, newest ``keep_checkpoints`` kept;
* ``samples/XXXXXXXX_<name>.png`` - validation crops, LR-bicubic | SR | HR;
* ``train_result.json`` - :meth:`TrainResult.to_dict`.

Launch under ``torchrun --nproc_per_node N`` for data parallelism: the call is the same on
every rank and the global batch in the config is split over the ranks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from esrgan.fileio import atomic_write, write_json
from esrgan.losses import PerceptualLoss
from esrgan.models import RRDBNet, VGGDiscriminator, save_generator
from esrgan.models.init_weights import load_init_discriminator, load_init_generator
from esrgan.training import distributed as dist_utils
from esrgan.training.callbacks import Callbacks, as_callbacks
from esrgan.training.config import GANStageConfig, OptimizerConfig, TrainConfig, parse_config
from esrgan.training.cross_rank import convert_batchnorm, cross_rank_mean
from esrgan.training.ema import ModelEMA
from esrgan.training.preemption import PreemptionFlag, TrainingPreempted
from esrgan.training.resume import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from esrgan.training.sampler import InfiniteSampler, training_loader
from esrgan.training.schedule import lr_at, set_lr
from esrgan.training.thread_shards import ThreadShards, resolve_thread_shards
from esrgan.training.updates import discriminator_step, generator_step, psnr_step
from esrgan.training.validation import Validator

log = logging.getLogger(__name__)

Stage = Literal["psnr", "gan"]
PathLike = str | Path


@dataclass
class TrainResult:
    """What a finished stage produced. Paths are absolute; metrics are plain floats.

    ``metrics`` holds the last validation (``psnr_y``, ``psnr_y_bicubic``) and the last
    logged training values. ``wall_time_s`` covers this call only (not earlier, resumed-from runs).
    """

    stage: str
    out_dir: Path
    generator_path: Path
    ema_generator_path: Path | None
    discriminator_path: Path | None
    checkpoint_path: Path | None
    iterations: int
    resumed_from: int
    wall_time_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None

    @property
    def final_generator_path(self) -> Path:
        """The generator to use downstream: EMA weights when EMA was on, else the trained ones."""
        return self.ema_generator_path or self.generator_path

    def to_dict(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        out["final_generator_path"] = str(self.final_generator_path)
        return out


def train_psnr(
    config: TrainConfig | dict[str, Any],
    hr_dir: PathLike,
    lr_dir: PathLike,
    val_hr_dir: PathLike | None,
    val_lr_dir: PathLike | None,
    out_dir: PathLike,
    resume: bool = False,
    callbacks: Callbacks | Sequence[Callbacks] | None = None,
) -> TrainResult:
    """Stage 1: train RRDBNet with L1 (config section ``psnr``). See :func:`train`."""
    return train("psnr", config, hr_dir, lr_dir, val_hr_dir, val_lr_dir, out_dir, resume=resume, callbacks=callbacks)


def train_gan(
    config: TrainConfig | dict[str, Any],
    hr_dir: PathLike,
    lr_dir: PathLike,
    val_hr_dir: PathLike | None,
    val_lr_dir: PathLike | None,
    out_dir: PathLike,
    init_generator: PathLike,
    resume: bool = False,
    callbacks: Callbacks | Sequence[Callbacks] | None = None,
) -> TrainResult:
    """Stage 2: ESRGAN fine-tuning from ``init_generator`` (config section ``gan``). See :func:`train`."""
    return train(
        "gan",
        config,
        hr_dir,
        lr_dir,
        val_hr_dir,
        val_lr_dir,
        out_dir,
        init_generator=init_generator,
        resume=resume,
        callbacks=callbacks,
    )


def train(
    stage: Stage,
    config: TrainConfig | dict[str, Any],
    hr_dir: PathLike,
    lr_dir: PathLike,
    val_hr_dir: PathLike | None,
    val_lr_dir: PathLike | None,
    out_dir: PathLike,
    *,
    init_generator: PathLike | None = None,
    resume: bool = False,
    callbacks: Callbacks | Sequence[Callbacks] | None = None,
    init_discriminator: PathLike | None = None,
) -> TrainResult:
    """Run one training stage.

    Args:
        stage: ``"psnr"`` or ``"gan"``.
        config: a :class:`TrainConfig` or a dict validated into one.
        hr_dir, lr_dir: training pairs (``esrgan.data.PairedPatchDataset`` folders).
        val_hr_dir, val_lr_dir: whole validation images; ``None`` skips validation.
        out_dir: run folder (created).
        init_generator: the generator to start from (any layout ``load_generator`` reads, weights
            chosen by ``auto``): required for ``"gan"`` unless resuming (the stage-1 generator);
            for ``"psnr"``, released weights to continue from. Default: the stage's
            ``init.generator`` with its ``init.param_key``. With ``iterations: 0`` the PSNR stage
            writes these weights as its model, validated but untrained.
        init_discriminator: the GAN stage's discriminator to start from (this project's layout
            or BasicSR's); default: ``finetune_gan.init.discriminator``, else random.
        resume: continue from the newest checkpoint in ``out_dir`` (fresh start if none).
        callbacks: observers of logs, validations and checkpoints (rank 0 only).

    Raises:
        TrainingPreempted: SIGTERM arrived; a checkpoint was written first (exit with
            ``PREEMPTED_EXIT_CODE`` and rerun with ``resume=True``).
        esrgan.training.ConfigError: invalid config.
        esrgan.feature_extractor.BackboneUnavailableError: perceptual weights missing (GAN stage).
    """
    if stage not in ("psnr", "gan"):
        raise ValueError(f"stage must be 'psnr' or 'gan', got {stage!r}")
    cfg = parse_config(config)
    sc = cfg.stage(stage)
    rt = cfg.runtime
    out_dir = Path(out_dir).resolve()
    t_start = time.perf_counter()

    # ---- runtime: device, precision, determinism -------------------------------------------
    ctx = dist_utils.init_distributed(rt.device)
    device, cuda = ctx.device, ctx.device.type == "cuda"
    cb = as_callbacks(callbacks) if ctx.is_main else Callbacks()
    previous_threads, previous_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if rt.threads:
        torch.set_num_threads(rt.threads)
    torch.use_deterministic_algorithms(rt.deterministic, warn_only=True)
    if cuda:
        torch.backends.cudnn.benchmark = not rt.deterministic
    amp_dtype = amp_dtype_for(rt.amp, device)
    # The relativistic loss compares with the mean of the whole (global) batch, as one process does.
    batch_mean = cross_rank_mean if ctx.distributed else torch.mean
    memory_format = memory_format_for(rt.channels_last, device, amp_dtype)

    def new_scaler() -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    # ---- models, losses, optimisers ------------------------------------------------------------
    torch.manual_seed(rt.seed)
    generator = RRDBNet(**cfg.model.model_dump())
    checkpoint = latest_checkpoint(out_dir) if resume else None
    # An explicit file is read as it is (the pipeline passes sources it resolved and re-saved);
    # the config's own source is read with its param_key.
    g_source, g_key = (init_generator, "auto") if init_generator is not None else (sc.init.generator, sc.init.param_key)
    if checkpoint is None and g_source is not None:
        initial = load_init_generator(g_source, g_key, expected=generator.config)
        generator.load_state_dict(initial.state_dict())
    elif stage == "gan" and checkpoint is None:
        raise ValueError("the GAN stage needs init_generator (the stage-1 generator file)")
    # torch's overloads of Module.to omit (device, memory_format=...), which it accepts.
    generator.to(device, memory_format=memory_format).train()  # type: ignore[call-overload]
    opt_g = adam(generator, sc.optimizer)
    scaler_g = new_scaler()
    ema = ModelEMA(generator, sc.ema.decay) if sc.ema.enabled else None

    discriminator: nn.Module | None = None
    perceptual: PerceptualLoss | None = None
    opt_d, scaler_d = None, None
    if isinstance(sc, GANStageConfig):
        discriminator = VGGDiscriminator(sc.data.patch_size, cfg.model.out_ch, sc.discriminator.num_feat)
        d_source, d_key = (
            (init_discriminator, "auto")
            if init_discriminator is not None
            else (sc.init.discriminator, sc.init.param_key)
        )
        if checkpoint is None and d_source is not None:
            load_init_discriminator(d_source, discriminator, d_key)
        if ctx.distributed and sc.discriminator.sync_batchnorm:
            # One batch's statistics on every rank: NCCL's fused SyncBatchNorm on CUDA, all-reduces elsewhere.
            discriminator = (
                nn.SyncBatchNorm.convert_sync_batchnorm(discriminator) if cuda else convert_batchnorm(discriminator)
            )
        discriminator.to(device, memory_format=memory_format).train()  # type: ignore[call-overload]
        opt_d = adam(discriminator, sc.optimizer_d)
        scaler_d = new_scaler()
        p = sc.perceptual
        perceptual = PerceptualLoss(layers=p.layers, backbone=p.backbone, allow_download=p.allow_download).to(device)
        perceptual.extractor.to(memory_format=memory_format)

    # ---- resume ----------------------------------------------------------------------------------
    start = 0
    resumed_metrics: dict[str, float] = {}
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        if state["stage"] != stage:
            raise ValueError(f"{checkpoint}: a {state['stage']!r} checkpoint cannot resume stage {stage!r}")
        start = int(state["iteration"])
        # What the run had reported: a finished run resumed (a re-run stage) reports it again.
        resumed_metrics = {k: float(v) for k, v in state.get("metrics", {}).items()}
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["optimizer_g"])
        if ema is not None:
            ema.load_state_dict(state["generator_ema"])
        if discriminator is not None and opt_d is not None:
            discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["optimizer_d"])
        for scaler, key in ((scaler_g, "scaler_g"), (scaler_d, "scaler_d")):
            if scaler is not None and key in state:
                scaler.load_state_dict(state[key])
        set_rng_state(state["rng"])
        log.info("resumed %s stage from %s (iteration %d)", stage, checkpoint, start)

    # DDP averages gradients over ranks. The G step calls D's plain module (see generator_step).
    g_train: nn.Module = generator
    d_train: nn.Module | None = discriminator
    if ctx.distributed:
        ids = [ctx.local_rank] if cuda else None
        g_train = DDP(generator, device_ids=ids)
        if discriminator is not None:
            d_train = DDP(discriminator, device_ids=ids)

    # ---- data: an endless, resumable stream of patches loaded in worker processes ----------------
    from esrgan.data import PairedImageDataset, PairedPatchDataset

    dataset = PairedPatchDataset(hr_dir, lr_dir, sc.data.patch_size, cfg.model.scale, sc.data.augment, rt.seed)
    sampler = InfiniteSampler(len(dataset), sc.data.batch_size, rt.seed, ctx.rank, ctx.world_size, start)
    workers = sc.data.num_workers
    loader = training_loader(dataset, sampler, workers, sc.data.prefetch_factor, rt.seed, pin_memory=cuda)
    batches = iter(loader) if start < sc.iterations else None  # no worker processes when nothing trains
    validator = None
    if ctx.is_main and val_hr_dir is not None and sc.val_every > 0:
        val_set = PairedImageDataset(val_hr_dir, val_lr_dir, scale=cfg.model.scale)
        lg = cfg.logging
        validator = Validator(val_set, cfg.model.scale, out_dir, lg.num_samples, lg.sample_crop, lg.val_tile)

    shards = resolve_thread_shards(
        rt.thread_shards,
        stage=stage,
        device=device,
        distributed=ctx.distributed,
        deterministic=rt.deterministic,
        batch_size=sc.data.batch_size,
        threads=torch.get_num_threads(),
    )
    # Only where something trains; the loop's `with` stops the threads however it ends.
    sharded = (
        ThreadShards(shards, max(1, torch.get_num_threads() // shards)) if shards > 1 and batches is not None else None
    )
    if sharded is not None:
        log.info("%s stage: each batch split over %d threads", stage, shards)

    # ---- the loop ---------------------------------------------------------------------------------
    backbone = perceptual.backbone if perceptual is not None else None
    n_params = sum(p.numel() for p in generator.parameters())
    cb.on_train_start(
        stage,
        cfg.to_dict(),
        {
            "backbone": backbone,
            "generator_params": n_params,
            "resumed_from": start,
            "device": str(device),
            "world_size": ctx.world_size,
        },
    )
    metrics: dict[str, float] = dict(resumed_metrics)
    sums: dict[str, torch.Tensor] = {}
    n_sum, t_interval = 0, time.perf_counter()
    last_checkpoint: Path | None = checkpoint
    pbar = tqdm(
        total=sc.iterations,
        initial=start,
        desc=f"{stage}",
        dynamic_ncols=True,
        disable=not (ctx.is_main and cfg.logging.progress_bar),
    )

    def write_checkpoint(done: int) -> Path | None:
        nonlocal last_checkpoint
        if ctx.is_main:
            state: dict[str, Any] = {
                "stage": stage,
                "iteration": done,
                "config": cfg.to_dict(),
                "generator": generator.state_dict(),
                "optimizer_g": opt_g.state_dict(),
                "rng": rng_state(),
                "metrics": dict(metrics),
            }
            if ema is not None:
                state["generator_ema"] = ema.state_dict()
            if discriminator is not None and opt_d is not None:
                state["discriminator"] = discriminator.state_dict()
                state["optimizer_d"] = opt_d.state_dict()
            for scaler, key in ((scaler_g, "scaler_g"), (scaler_d, "scaler_d")):
                if scaler is not None:
                    state[key] = scaler.state_dict()
            last_checkpoint = save_checkpoint(out_dir, state, cfg.logging.keep_checkpoints)
            cb.on_checkpoint(done, last_checkpoint)
        else:
            last_checkpoint = checkpoint_path(out_dir, done)  # written by rank 0
        dist_utils.barrier(ctx)
        return last_checkpoint

    with PreemptionFlag() as preemption, sharded or contextlib.nullcontext():
        for step in range(start, sc.iterations):
            # learning rate of this iteration, a pure function of the step
            lr_g = lr_at(step, sc.optimizer.lr, sc.schedule, sc.iterations)
            set_lr(opt_g, lr_g)
            assert batches is not None
            batch = next(batches)
            lr_img = batch["lr"].to(device, non_blocking=True, memory_format=memory_format)
            hr_img = batch["hr"].to(device, non_blocking=True, memory_format=memory_format)

            if isinstance(sc, GANStageConfig):
                assert (
                    discriminator is not None and d_train is not None and perceptual is not None and opt_d is not None
                )
                lr_d = lr_at(step, sc.optimizer_d.lr, sc.schedule, sc.iterations)
                set_lr(opt_d, lr_d)
                sr, values = generator_step(
                    g_train,
                    discriminator,
                    perceptual,
                    lr_img,
                    hr_img,
                    opt_g,
                    sc.loss_weights,
                    scaler_g,
                    amp_dtype,
                    batch_mean,
                )
                values |= discriminator_step(d_train, sr, hr_img, opt_d, scaler_d, amp_dtype, batch_mean)
            elif sharded is not None:
                values = sharded.psnr_step(g_train, lr_img, hr_img, opt_g, amp_dtype)
            else:
                values = psnr_step(g_train, lr_img, hr_img, opt_g, scaler_g, amp_dtype)
            if ema is not None:
                ema.update(generator)
            done = step + 1
            pbar.update(1)

            # accumulate on-device; synchronise only when logging
            for k, v in values.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            n_sum += 1
            if done % sc.log_every == 0 or done == sc.iterations:
                elapsed = time.perf_counter() - t_interval
                metrics = {k: float(v) / n_sum for k, v in sums.items()}
                metrics = dist_utils.mean_over_ranks(ctx, metrics)
                metrics["lr"] = lr_g
                if isinstance(sc, GANStageConfig):
                    metrics["lr_d"] = lr_d
                metrics["it_per_s"] = n_sum / max(elapsed, 1e-9)
                sums, n_sum, t_interval = {}, 0, time.perf_counter()
                cb.on_log(done, metrics)
                pbar.set_postfix(
                    {k: f"{metrics[k]:.4g}" for k in ("loss_pixel", "loss_g", "loss_d_real", "lr") if k in metrics}
                )

            if sc.val_every > 0 and (done % sc.val_every == 0 or done == sc.iterations):
                if validator is not None:
                    val_metrics, images = validator(ema.module if ema is not None else generator, done)
                    metrics |= val_metrics
                    cb.on_validation(done, val_metrics, images)
                    summary = ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items())
                    log.info("%s iteration %d: %s", stage, done, summary)
                    if not pbar.disable:
                        pbar.write(f"[{stage} {done}] {summary}")
                dist_utils.barrier(ctx)

            stop = dist_utils.any_rank(ctx, preemption.requested)
            if done % sc.checkpoint_every == 0 or done == sc.iterations or stop:
                write_checkpoint(done)
            if stop:
                pbar.close()
                assert last_checkpoint is not None
                _restore(previous_threads, previous_det)
                raise TrainingPreempted(done, last_checkpoint)
    pbar.close()
    if sc.iterations == 0 and validator is not None:  # the init weights as they are: measured once
        val_metrics, images = validator(ema.module if ema is not None else generator, 0)
        metrics |= val_metrics
        cb.on_validation(0, val_metrics, images)

    # ---- export ----------------------------------------------------------------------------------
    del batches  # stops the worker processes
    generator_path = out_dir / "generator.pth"
    ema_path = out_dir / "generator_ema.pth" if ema is not None else None
    d_path = out_dir / "discriminator.pth" if discriminator is not None else None
    result = TrainResult(
        stage=stage,
        out_dir=out_dir,
        generator_path=generator_path,
        ema_generator_path=ema_path,
        discriminator_path=d_path,
        checkpoint_path=last_checkpoint,
        iterations=sc.iterations,
        resumed_from=start,
        wall_time_s=time.perf_counter() - t_start,
        metrics=metrics,
        backbone=backbone,
    )
    if ctx.is_main:
        save_generator(generator, generator_path)
        if ema is not None and ema_path is not None:
            save_generator(ema.module, ema_path)
        if discriminator is not None and d_path is not None:
            d_state = {k: v.detach().cpu() for k, v in discriminator.state_dict().items()}
            atomic_write(d_path, lambda tmp: torch.save(d_state, tmp))
        write_json(out_dir / "train_result.json", result.to_dict())
        cb.on_train_end(result)
    dist_utils.barrier(ctx)
    _restore(previous_threads, previous_det)
    return result


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``runtime.amp`` means on ``device``; ``None`` is full fp32.

    ``auto`` is bf16 where the device computes it natively (a CUDA GPU that supports it; a CPU
    with AVX512_BF16 or AMX, where bf16 convolutions run ~2x fp32), else fp32. On CPU ``bf16``
    is honoured even where it is emulated (slower than fp32), and ``fp16`` is ignored: CPUs
    have no fast fp16 training path. Weights, optimiser states and every loss stay fp32.
    """
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        from esrgan.engines.loader import native_bf16

        return torch.bfloat16 if device.type == "cpu" and native_bf16() else None
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "fp16":
        log.info("runtime.amp fp16 applies on CUDA only; running fp32 on %s", device)
    elif amp == "bf16" and device.type == "cpu":
        from esrgan.engines.loader import native_bf16

        if not native_bf16():
            log.warning("runtime.amp bf16: this CPU has no native bf16 (AVX512_BF16/AMX); emulated, slower than fp32")
        return torch.bfloat16
    return None


def adam(module: nn.Module, config: OptimizerConfig) -> torch.optim.Adam:
    """Adam over ``module``'s parameters, torch's default kernel.

    Not fused: a fused CPU Adam saved ~9% of a demo GAN iteration, but a 1-rank GAN run with it
    ended 12% of its displacement away from the 2-rank run after two iterations (unfused: 0.6%;
    tests/e2e/test_torchrun_training.py), which is not understood yet.
    """
    return torch.optim.Adam(module.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def memory_format_for(
    channels_last: Literal["auto"] | bool, device: torch.device, amp_dtype: torch.dtype | None
) -> torch.memory_format:
    """The tensor layout that ``runtime.channels_last`` means on ``device`` under ``amp_dtype``.

    ``auto`` is NHWC under bf16 autocast on CPU, where oneDNN's bf16 convolutions work in NHWC and
    NCHW tensors are reordered around each one (measured: a GAN-stage iteration ~19% less CPU
    time, a PSNR one ~7%); NCHW elsewhere (fp32 on CPU; CUDA, where a profile opts in).
    """
    if channels_last == "auto":
        channels_last = device.type == "cpu" and amp_dtype == torch.bfloat16
    return torch.channels_last if channels_last else torch.contiguous_format


def _restore(threads: int, deterministic: bool) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
