"""runtime.processes on CPU: 2 gloo ranks through the real entry points (``esrgan stage`` under the
torchrun it launches, and a KFP training task under kfp.local) against 1 process with the same
global batch; resume across rank counts; a killed rank stops the stage in one line, and the next
run resumes. One tiny setup (RRDBNet nf 8, 1 block, 32-pixel patches) shared by every test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.e2e.project import tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*spandrel-based tools:UserWarning")]

#: 1 vs 2 ranks compute the same sums in another order (each rank reduces its half batch, then the
#: ranks average): one process summing a batch of 4 as 2 + 2 already moves the gradient by ~1.6e-5
#: (relative L2). Measured here in fp32: first gradient 1.7e-5, weights after 4 Adam steps 5e-6 of
#: the training displacement (max |diff| 1.6e-6). Adam's first updates are ~lr x sign(gradient), so
#: a near-zero gradient's rounding can move one weight by up to ~lr (blob images: 5e-3 of the
#: displacement), hence bounds on distances, with margin; a wrong split (a patch twice, one
#: missed) moves the gradient by tens of percent.
GRAD_RTOL = 1e-3
WEIGHTS_RTOL = 2e-2
PSNR_ITERS = 4


def _params(processes: int, **psnr: Any) -> dict[str, Any]:
    params = tiny_params()
    # fp32 (not the demo's amp: auto, bf16 on CPUs that have it): the comparison is about the ranks
    params["runtime"].update(processes=processes, deterministic=True, threads=1, amp="none")
    section = params["pretrain_psnr"]
    section.update(iterations=PSNR_ITERS, checkpoint_every=1, val_every=PSNR_ITERS, log_every=1, **psnr)
    section["data"].update(batch_size=4)
    params["finetune_gan"].update(iterations=2, checkpoint_every=1, val_every=0)
    # The discriminator's BatchNorm over the global batch (what makes N ranks one process's computation).
    params["finetune_gan"]["discriminator"].update(sync_batchnorm=True)
    params["finetune_gan"]["data"].update(batch_size=2, patch_size=128)
    params["logging"].update(keep_checkpoints=10)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """params<N>.yaml for 1 and 2 ranks, and the sample set's patches cut by the extract stage."""
    from esrgan.data import build_sample_dataset

    root = tmp_path_factory.mktemp("torchrun")
    for n in (1, 2):
        (root / f"params{n}.yaml").write_text(yaml.safe_dump(_params(n), sort_keys=False))
    build_sample_dataset(root / "data")
    cmd = [sys.executable, "-m", "pipeline.cli", "stage", "--params", "params1.yaml", "extract_patches"]
    result = _run(root, [*cmd, "--data", "data", "--out", "patches", "--metrics", "metrics/extract.json"])
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    repo = str(Path(__file__).resolve().parents[2])
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONPATH=os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p),
        ESRGAN_COLLECTIVE_TIMEOUT_S="120",
    )
    return env


def _stage(root: Path, n: int, stage: str, run: str, *extra: str) -> list[str]:
    out = [sys.executable, "-m", "pipeline.cli", "stage", "--params", f"params{n}.yaml", stage]
    out += ["--patches", "patches", "--run-dir", f"runs/{run}", "--model-out", f"models/{run}.pth"]
    return [*out, "--metrics", f"metrics/{run}.json", *extra]


def _run(root: Path, cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)


def _checkpoint(root: Path, run: str, iteration: int) -> dict[str, Any]:
    path = root / "runs" / run / "checkpoints" / f"iter_{iteration:08d}.pth"
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def _max_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over every tensor of two nested checkpoints (weights and Adam moments)."""
    if isinstance(a, torch.Tensor):
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        return max((_max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    return 0.0


@pytest.fixture(scope="module")
def psnr_runs(project: Path) -> dict[str, Any]:
    """``esrgan stage pretrain_psnr``: 1 rank, 2 ranks, and 2 ranks resumed from the 1-rank run's iteration 2."""
    done: dict[str, Any] = {}
    for n in (1, 2):
        result = _run(project, _stage(project, n, "pretrain_psnr", f"psnr{n}"))
        assert result.returncode == 0, result.stderr[-3000:]
        done[f"stdout{n}"] = result.stdout
    shutil.copytree(project / "runs" / "psnr1", project / "runs" / "psnr_resumed")
    for later in (project / "runs" / "psnr_resumed" / "checkpoints").glob("iter_*.pth"):
        if later.name != "iter_00000002.pth":
            later.unlink()
    result = _run(project, _stage(project, 2, "pretrain_psnr", "psnr_resumed"))
    assert result.returncode == 0, result.stderr[-3000:]
    done["resumed_stderr"] = result.stderr
    return done


def _init_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    from esrgan.models import RRDBNet

    torch.manual_seed(checkpoint["config"]["runtime"]["seed"])  # what train() starts from
    return RRDBNet(**checkpoint["config"]["model"]).state_dict()


def _relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """|a - b| / |a - start| over all weights: how far apart, compared with how far training went."""

    def flat(sd: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([sd[k].double().flatten() for k in sorted(a)])

    return float((flat(a) - flat(b)).norm() / (flat(a) - flat(start)).norm())


def test_psnr_stage_on_two_ranks_matches_one_rank(project: Path, psnr_runs: dict[str, Any]) -> None:
    # After one Adam step exp_avg is 0.1 x the gradient: the gradient of the whole global batch.
    first = [
        torch.cat(
            [
                s["exp_avg"].double().flatten()
                for s in _checkpoint(project, f"psnr{n}", 1)["optimizer_g"]["state"].values()
            ]
        )
        for n in (1, 2)
    ]
    grad_diff = float((first[0] - first[1]).norm() / first[0].norm())
    one, two = _checkpoint(project, "psnr1", PSNR_ITERS), _checkpoint(project, "psnr2", PSNR_ITERS)
    distance = _relative_distance(one["generator"], two["generator"], _init_weights(one))
    print(
        f"1 vs 2 ranks: first gradient relative L2 diff {grad_diff:.3g}; after {PSNR_ITERS} iterations weights "
        f"max |diff| {_max_diff(one['generator'], two['generator']):.3g}, distance {distance:.3g} of the "
        "training displacement"
    )
    assert grad_diff < GRAD_RTOL
    assert distance < WEIGHTS_RTOL
    for n in (1, 2, 3, 4):  # the same loss at every iteration (logged as the mean over ranks)
        losses = [_checkpoint(project, f"psnr{r}", n)["metrics"]["loss_pixel"] for r in (1, 2)]
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    # rank 0 alone printed the step's result and wrote the outputs
    assert json.loads(psnr_runs["stdout2"])["iterations"] == PSNR_ITERS
    assert (project / "models" / "psnr2.pth").is_file() and (project / "metrics" / "psnr2.json").is_file()
    assert len(list((project / "runs" / "psnr2" / "samples").iterdir())) > 0


def test_two_ranks_resume_from_a_one_rank_checkpoint(project: Path, psnr_runs: dict[str, Any]) -> None:
    assert "iteration 2" in psnr_runs["resumed_stderr"]  # resumed, not restarted (fingerprint ignores processes)
    one, resumed = _checkpoint(project, "psnr1", PSNR_ITERS), _checkpoint(project, "psnr_resumed", PSNR_ITERS)
    distance = _relative_distance(one["generator"], resumed["generator"], _init_weights(one))
    print(
        f"2 iterations on 1 rank then 2 on 2 ranks vs 4 on 1 rank: weights max |diff| "
        f"{_max_diff(one['generator'], resumed['generator']):.3g}, distance {distance:.3g}"
    )
    assert distance < WEIGHTS_RTOL
    assert resumed["metrics"]["loss_pixel"] == pytest.approx(one["metrics"]["loss_pixel"], rel=1e-5)


def test_a_finished_run_rerun_with_another_count_writes_the_same_outputs(
    project: Path, psnr_runs: dict[str, Any]
) -> None:
    """What ``dvc repro`` does after runtime.processes changes: the stage runs again on its run
    folder, resumes at the last iteration, trains nothing and writes the same model and metrics."""
    before = json.loads((project / "metrics" / "psnr2.json").read_text())
    cmd = _stage(project, 1, "pretrain_psnr", "psnr2")
    cmd[cmd.index("models/psnr2.pth")], cmd[cmd.index("metrics/psnr2.json")] = "models/again.pth", "metrics/again.json"
    result = _run(project, cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / "models" / "again.pth").read_bytes() == (project / "models" / "psnr2.pth").read_bytes()
    after = json.loads((project / "metrics" / "again.json").read_text())
    assert {k: v for k, v in after.items() if k != "wall_time_s"} == {
        k: v for k, v in before.items() if k != "wall_time_s"
    }


def test_gan_stage_on_two_ranks_matches_one_rank_and_resumes_from_it(project: Path, psnr_runs: dict[str, Any]) -> None:
    """The GAN stage under 2 ranks through ``esrgan stage finetune_gan``: the same model as 1 rank
    (BatchNorm statistics and the relativistic batch means span both ranks), and it resumes a 1-rank run."""
    init = ["--init", "models/psnr1.pth"]
    result = _run(project, _stage(project, 1, "finetune_gan", "gan", *init))
    assert result.returncode == 0, result.stderr[-3000:]
    one = _checkpoint(project, "gan", 2)
    result = _run(project, _stage(project, 2, "finetune_gan", "gan2", *init))
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = _checkpoint(project, "gan2", 2)
    from esrgan.models import load_generator

    start = load_generator(project / "models" / "psnr1.pth").state_dict()
    g_distance = _relative_distance(one["generator"], fresh["generator"], start)
    d_start = _checkpoint(project, "gan", 1)["discriminator"]  # D after one step: its init is not saved
    d_diff = _max_diff(one["discriminator"], fresh["discriminator"])
    print(
        f"GAN, 2 iterations, 2 ranks vs 1: G distance {g_distance:.3g} of its displacement, D max |diff| {d_diff:.3g}"
    )
    assert g_distance < WEIGHTS_RTOL
    assert _relative_distance(one["discriminator"], fresh["discriminator"], d_start) < 1.0

    (project / "runs" / "gan" / "checkpoints" / "iter_00000002.pth").unlink()
    result = _run(project, _stage(project, 2, "finetune_gan", "gan", *init))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iteration 1" in result.stderr
    two = _checkpoint(project, "gan", 2)
    resumed = _relative_distance(one["generator"], two["generator"], start)
    print(f"GAN, iteration 2 on 2 ranks after 1 on 1 rank vs 2 on 1 rank: G distance {resumed:.3g}")
    assert resumed < WEIGHTS_RTOL
    assert set(two) >= {"generator", "discriminator", "optimizer_d", "generator_ema"}
    assert (project / "models" / "gan.pth").is_file()


def test_a_killed_rank_or_sigterm_stops_the_stage_in_one_line_and_the_rerun_resumes(project: Path) -> None:
    params = _params(2)
    params["pretrain_psnr"].update(iterations=120, checkpoint_every=2, val_every=0)
    (project / "params_kill.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = _stage(project, 2, "pretrain_psnr", "kill")
    cmd[cmd.index("params2.yaml")] = "params_kill.yaml"
    proc = subprocess.Popen(
        cmd, cwd=project, env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = project / "runs" / "kill" / "checkpoints" / "iter_00000002.pth"
    deadline, rank1 = time.monotonic() + 240, None
    while not (first.exists() and rank1) and proc.poll() is None and time.monotonic() < deadline:
        rank1 = rank1 or _rank_pid(proc.pid, 1)
        time.sleep(0.05)
    assert first.exists() and rank1, proc.communicate()[1][-3000:]
    killed_at = time.monotonic()
    os.kill(rank1, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)  # no hang: torchrun and gloo notice within seconds
    print(f"stage exited {time.monotonic() - killed_at:.1f} s after kill -9 of rank 1")
    errors = [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert proc.returncode == 1
    assert errors == [
        "esrgan: error: stage pretrain_psnr: rank 1 of 2 was killed by SIGKILL; all ranks stopped "
        "(run it again to resume from the last checkpoint)"
    ], stderr[-3000:]
    last = max(int(p.name[5:13]) for p in first.parent.glob("iter_*.pth"))
    # The rerun resumes; a SIGTERM to it (what Kubernetes sends) reaches both ranks, which stop at
    # the same iteration; rank 0 writes that checkpoint and the stage says so once, exit 143.
    proc = subprocess.Popen(
        cmd, cwd=project, env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    later = first.parent / f"iter_{last + 2:08d}.pth"
    while not later.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert f"(iteration {last})" in stderr  # it had resumed
    errors = [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert proc.returncode == 143 and len(errors) == 1, stderr[-3000:]
    stopped = int(errors[0].split("at iteration ")[1].split(";")[0])
    assert errors[0].startswith("esrgan: error: preempted: preempted (SIGTERM) at iteration ")
    assert (first.parent / f"iter_{stopped:08d}.pth").is_file() and stopped < 120
    result = _run(project, cmd)  # and the next run resumes from there
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"(iteration {stopped})" in result.stderr


def test_kfp_training_task_on_two_ranks_matches_the_one_rank_stage(project: Path, psnr_runs: dict[str, Any]) -> None:
    """The pretrain_psnr KFP component under kfp.local (SubprocessRunner) with runtime.processes 2."""
    script = project / "kfp_task.py"
    script.write_text(_KFP_SCRIPT)
    result = _run(project, [sys.executable, str(script)], timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = Path(result.stdout.strip().splitlines()[-1])
    from esrgan.models import load_generator

    kfp = load_generator(model).state_dict()
    two = load_generator(project / "models" / "psnr2.pth").state_dict()
    one = load_generator(project / "models" / "psnr1.pth").state_dict()
    same = _max_diff(kfp, two)
    print(f"KFP task on 2 ranks vs esrgan stage on 2 ranks: max |diff| {same:.3g}; vs 1 rank {_max_diff(kfp, one):.3g}")
    assert same < 1e-6  # the same computation as the stage's 2 ranks
    assert _relative_distance(one, kfp, _init_weights(_checkpoint(project, "psnr1", PSNR_ITERS))) < WEIGHTS_RTOL


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The process of ``rank`` among the launcher's children (torchrun sets RANK in each), if started."""
    children = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        try:
            if f"RANK={rank}\0".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                return pid
        except OSError:
            continue
    return None


#: A one-task pipeline: a helper component stages the config artifact and the patches, then the
#: project's pretrain_psnr component trains on them (its body launches 2 ranks).
_KFP_SCRIPT = """
import json, sys
from pathlib import Path
from kfp import dsl, local
from kfp.dsl import Artifact, Dataset, Output
from pipeline.images import Images
from pipeline.kfp.build import build_components

ROOT = Path.cwd()


@dsl.component(install_kfp_package=False)
def stage_inputs(root: str, config: Output[Artifact], patches: Output[Dataset]) -> None:
    import shutil
    from pathlib import Path

    from pipeline.kfp.components.runtime import write_config
    from pipeline.params import load_params

    write_config(config.path, load_params(Path(root) / "params2.yaml"), "k" * 16, {"source": "local"})
    shutil.copytree(Path(root) / "patches", patches.path)


c = build_components(Images.for_version())


@dsl.pipeline
def one_task(root: str, checkpoint_root: str) -> None:
    inputs = stage_inputs(root=root)
    c.pretrain_psnr(
        config=inputs.outputs["config"],
        patches=inputs.outputs["patches"],
        checkpoint_root=checkpoint_root,
        kfp_run_id="local",
        kfp_run_name="local",
        gpus=0,
        checkpoint_pvc="unused-here",
    )


local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(ROOT / "kfp-artifacts"), raise_on_error=True)
one_task(root=str(ROOT), checkpoint_root=str(ROOT / "kfp-checkpoints"))
(model,) = (ROOT / "kfp-artifacts").rglob("pretrain-psnr/model/generator.pth")
print(model)
"""
