"""LPIPS / ST-LPIPS: offline behaviour, weight loading, and distances that order distortions."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from scipy.ndimage import gaussian_filter

from esrgan.metrics import MetricUnavailable, clear_cache, lpips, perceptual_metrics, stlpips
from esrgan.metrics import perceptual as perceptual_module


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty torch hub cache, no network, and a fresh network cache for every test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    clear_cache()
    yield
    clear_cache()


def _image(size: int = 64) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[100 : 100 + size, 180 : 180 + size])


def _noisy(img: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def _blurred(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.round(gaussian_filter(img.astype(np.float64), (sigma, sigma, 0))).astype(np.uint8)


def _fake_torchvision_alexnet(torch_home: Path, seed: int) -> Path:
    """A torchvision-format AlexNet checkpoint with random weights (features only, as lpips needs)."""
    torch.manual_seed(seed)
    feats = torchvision.models.alexnet(weights=None).features.state_dict()
    path = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in feats.items()}, path)
    return path


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_without_trunk_weights_is_unavailable(net: str, tmp_path: Path) -> None:
    img = _image()
    with pytest.raises(MetricUnavailable) as info:
        lpips(img, img, net=net)
    message = str(info.value)
    assert "\n" not in message
    expected = "alexnet-owt-7be5be79.pth" if net == "alex" else "vgg16-397923af.pth"
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / expected) in message
    assert "ImageNet weights not found" in message


def test_lpips_loads_the_trunk_from_the_torch_hub_cache(tmp_path: Path) -> None:
    img, noisy = _image(), _noisy(_image(), 20)
    _fake_torchvision_alexnet(tmp_path / "torch_home", seed=0)
    assert lpips(img, img) == pytest.approx(0.0, abs=1e-7)
    d0 = lpips(noisy, img)
    assert d0 > 0
    # A different trunk file gives a different distance: the file really is what is used.
    _fake_torchvision_alexnet(tmp_path / "torch_home", seed=1)
    clear_cache()
    assert lpips(noisy, img) != pytest.approx(d0, rel=1e-3)


def test_lpips_rejects_a_broken_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(MetricUnavailable, match="not a usable torchvision checkpoint"):
        lpips(_image(), _image())


def test_stlpips_weights_ship_with_the_package_and_load_completely() -> None:
    model = perceptual_module._build_stlpips("alex")  # the autouse fixture forbids downloads
    shipped = torch.load(perceptual_module._stlpips_weights_path("alex"), map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert any(k.startswith("net.") for k in shipped)  # the trunk is in the file, not fetched
    for key, value in shipped.items():
        assert torch.equal(state[key], value), key


def test_stlpips_identical_is_zero_and_distance_grows_with_distortion() -> None:
    img = _image()
    assert stlpips(img, img) == pytest.approx(0.0, abs=1e-7)
    by_noise = [stlpips(_noisy(img, s), img) for s in (5, 20, 50)]
    assert 0 < by_noise[0] < by_noise[1] < by_noise[2]
    by_blur = [stlpips(_blurred(img, s), img) for s in (0.7, 1.5, 3.0)]
    assert 0 < by_blur[0] < by_blur[1] < by_blur[2]


@pytest.mark.slow
def test_stlpips_vgg_orders_distortions() -> None:
    img = _image()
    assert stlpips(img, img, net="vgg") == pytest.approx(0.0, abs=1e-7)
    d = [stlpips(_noisy(img, s), img, net="vgg") for s in (5, 20, 50)]
    assert 0 < d[0] < d[1] < d[2]
    b = [stlpips(_blurred(img, s), img, net="vgg") for s in (0.7, 3.0)]
    assert 0 < b[0] < b[1]


def test_networks_are_built_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    real_build = perceptual_module._build_stlpips

    def counting_build(net):
        builds.append(net)
        return real_build(net)

    monkeypatch.setattr(perceptual_module, "_build_stlpips", counting_build)
    img, noisy = _image(48), _noisy(_image(48), 20)
    results: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        value = stlpips(noisy, img)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == ["alex"]
    assert len(results) == 4 and max(results) - min(results) < 1e-6


def test_perceptual_metrics_reports_unavailable_variants() -> None:
    img, noisy = _image(), _noisy(_image(), 20)
    out = perceptual_metrics(noisy, img, names=("lpips_alex", "lpips_vgg", "stlpips_alex"))
    assert set(out) == {"lpips_alex", "lpips_vgg", "stlpips_alex", "unavailable"}
    assert out["lpips_alex"] is None and out["lpips_vgg"] is None
    assert out["stlpips_alex"] == pytest.approx(stlpips(noisy, img), abs=1e-7) and out["stlpips_alex"] > 0
    assert set(out["unavailable"]) == {"lpips_alex", "lpips_vgg"}
    assert "alexnet-owt-7be5be79.pth" in out["unavailable"]["lpips_alex"]


def test_perceptual_argument_errors() -> None:
    img = _image()
    with pytest.raises(ValueError, match="net must be one of"):
        stlpips(img, img, net="squeeze")
    with pytest.raises(ValueError, match="shapes differ"):
        stlpips(img[:-1], img)
    with pytest.raises(TypeError, match="uint8"):
        stlpips(img.astype(np.float32), img)
    with pytest.raises(ValueError, match="unknown perceptual metrics"):
        perceptual_metrics(img, img, names=("lpips_squeeze",))
