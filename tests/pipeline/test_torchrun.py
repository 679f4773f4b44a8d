"""runtime.processes / runtime.nodes without launching anything: how many ranks, which batches
split, what stays out of the run folder's fingerprint, and what the KFP GPU request follows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pipeline.errors import ParamsError
from pipeline.kfp.run import build_arguments
from pipeline.params import parse_params
from pipeline.torchrun import lost_peer, resolve_processes, stage_processes

ROOT = Path(__file__).resolve().parents[2]


def doc(**runtime: object) -> dict:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["runtime"].update(runtime)
    return data


@pytest.mark.parametrize(
    ("setting", "device", "gpus", "expected"),
    [
        ("auto", "cpu", 4, 1),  # CPU: one process unless a number says otherwise
        ("auto", "auto", 0, 1),
        ("auto", "auto", 4, 4),  # one rank per visible GPU
        ("auto", "cuda", 2, 2),
        (3, "cpu", 0, 3),  # gloo processes on CPU
        (2, "cuda", 8, 2),  # fewer ranks than GPUs is allowed
    ],
)
def test_resolve_processes(setting: object, device: str, gpus: int, expected: int) -> None:
    assert resolve_processes(setting, device, gpus) == expected  # type: ignore[arg-type]


def test_more_processes_than_gpus_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"runtime.processes is 4 but 2 GPU\(s\) are visible"):
        resolve_processes(4, "cuda", 2)


def test_the_global_batch_must_split_over_the_ranks() -> None:
    with pytest.raises(ParamsError) as err:
        parse_params(doc(processes=3))
    assert str(err.value).splitlines() == [
        "params: pretrain_psnr.data.batch_size (8) is the global batch and must split evenly over 3 training "
        "processes (runtime.processes 3 x runtime.nodes 1)",
        "params: finetune_gan.data.batch_size (2) is the global batch and must split evenly over 3 training "
        "processes (runtime.processes 3 x runtime.nodes 1)",
    ]
    # nodes multiply: 2 x 2 ranks cannot share a batch of 2
    with pytest.raises(ParamsError, match="over 4 training processes"):
        parse_params(doc(processes=2, nodes=2))
    assert parse_params(doc(processes=2)).runtime.processes == 2
    # auto is checked where it resolves (the visible GPUs are known only there)
    params = parse_params(doc(processes="auto", device="cpu"))
    assert stage_processes(params) == 1


@pytest.mark.parametrize("bad", [0, -1, 1025, True, 2.0, "four", None])
def test_processes_is_auto_or_a_whole_number(bad: object) -> None:
    with pytest.raises(ParamsError, match=r"runtime.processes: expected auto or a whole number from 1 to 1024"):
        parse_params(doc(processes=bad))


def test_launch_settings_stay_out_of_the_run_folder_fingerprint(tmp_path: Path) -> None:
    from pipeline.steps.training import _input_fingerprint

    (tmp_path / "train").mkdir()
    prints = [
        _input_fingerprint(
            SimpleNamespace(params=parse_params(doc(processes=n, nodes=m))), "pretrain_psnr", tmp_path, None
        )
        for n, m in ((1, 1), (2, 1), (1, 2))
    ]
    assert prints[0] == prints[1] == prints[2]  # a checkpoint of 1 rank resumes with 2, or 4
    other = _input_fingerprint(SimpleNamespace(params=parse_params(doc(seed=1))), "pretrain_psnr", tmp_path, None)
    assert other != prints[0]  # the rest of runtime still counts


def test_kfp_gpu_request_follows_runtime_processes() -> None:
    names = ["params_json", "training_gpus", "psnr_iterations"]
    assert build_arguments(names, [], params_doc=doc(processes=4, device="cuda"))["training_gpus"] == 4
    assert build_arguments(names, [], params_doc=doc(processes="auto"))["training_gpus"] == 1
    compiled = build_arguments(names, [], params_doc=doc())["params_json"]
    args = build_arguments(names, ["runtime.processes=2"], compiled_params_json=compiled)
    assert args["training_gpus"] == 2
    assert build_arguments(names, ["training_gpus=8"], params_doc=doc(processes=2))["training_gpus"] == 8
    assert "training_gpus" not in build_arguments(names, ["psnr_iterations=5"])


def test_errors_outside_a_launch_are_not_lost_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:28081")
    for name in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not lost_peer(gloo)  # a plain process reports its own errors
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert lost_peer(gloo) and not lost_peer(RuntimeError("CUDA out of memory")) and not lost_peer(ValueError("x"))
