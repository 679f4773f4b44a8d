"""Perceptual backbones: layer cut, freezing, offline errors, and the ST-LPIPS VGG16 mapping."""

from __future__ import annotations

import pytest
import torch
import torchvision

from esrgan.feature_extractor import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STLPIPS_VGG16_CONV_MAP,
    BackboneUnavailableError,
    build_feature_extractor,
    layer_names,
    stlpips_vgg16_path,
)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_layer_names_follow_torchvision_indices() -> None:
    names = layer_names("vgg19")
    assert len(names) == len(torchvision.models.vgg19().features) == 37
    assert names.index("conv5_4") == 34 and names[35] == "relu5_4"
    assert layer_names("vgg16").index("conv5_3") == 28


def test_vgg19_file_stops_at_conv5_4_before_relu(tmp_path) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.vgg19().eval()
    path = tmp_path / "vgg19.pth"
    torch.save(reference.state_dict(), path)  # torchvision layout: features.N.*, classifier.*
    extractor = build_feature_extractor(str(path))
    assert extractor.layers == ["conv5_4"]
    assert len(extractor.features) == 35  # nothing computed past conv5_4
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        expected = reference.features[:35](_normalise(x))
        got = extractor(x)["conv5_4"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got < 0).any()  # pre-activation: negative values survive
    info = extractor.backbone.as_dict()
    assert info["file"] == str(path) and len(info["sha256"]) == 16


def test_extractor_is_frozen_and_stays_in_eval_mode() -> None:
    extractor = build_feature_extractor("random", ["conv2_2"])
    parent = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), extractor)
    parent.train()
    assert parent[0].training and not extractor.training
    assert all(not p.requires_grad for p in extractor.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    extractor(x)["conv2_2"].sum().backward()
    assert x.grad is not None  # gradients reach the input (the SR image)


def test_random_backbone_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_feature_extractor("random", ["conv1_1"])
    assert torch.equal(torch.get_rng_state(), before)
    b = build_feature_extractor("random", ["conv1_1"])
    assert torch.equal(a.features[0].weight, b.features[0].weight)


def test_unknown_layer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="conv6_1"):
        build_feature_extractor("random", ["conv6_1"])


def test_vgg19_imagenet_offline_without_file_is_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ESRGAN_ALLOW_DOWNLOAD", raising=False)

    def no_network(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(BackboneUnavailableError) as err:
        build_feature_extractor("vgg19-imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "stlpips-vgg16" in msg


def test_vgg19_imagenet_is_read_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    reference = torchvision.models.vgg19()
    target = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    extractor = build_feature_extractor("vgg19-imagenet", ["conv1_1"])
    assert torch.equal(extractor.features[0].weight, reference.features[0].weight)
    assert extractor.backbone.file == str(target) and "ImageNet" in extractor.backbone.pretraining


def test_unknown_backbone_name() -> None:
    with pytest.raises(BackboneUnavailableError, match="neither"):
        build_feature_extractor("vgg19-does-not-exist")


def test_stlpips_vgg16_mapping_reproduces_the_package_network() -> None:
    pytest.importorskip("stlpips_pytorch")
    from stlpips_pytorch import stlpips

    assert stlpips_vgg16_path().is_file()
    reference = stlpips.LPIPS(net="vgg", variant="shift_tolerant", verbose=False).eval()
    extractor = build_feature_extractor("stlpips-vgg16", ["conv1_2", "conv3_3", "conv5_3"])
    assert extractor.arch == "vgg16"
    # Every mapped conv equals the package's tensors, and the mapping covers all 13 convs.
    ref_state = reference.state_dict()
    convs = [i for i, m in enumerate(extractor.features) if isinstance(m, torch.nn.Conv2d)]
    assert convs == sorted(STLPIPS_VGG16_CONV_MAP.values())
    for prefix, idx in STLPIPS_VGG16_CONV_MAP.items():
        assert torch.equal(extractor.features[idx].weight, ref_state[f"{prefix}.weight"])
    # Same outputs on a random input: package = relu(features), after its own scaling layer on [-1, 1].
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = reference.net(reference.scaling_layer(2 * x - 1))
        ours = extractor(x)
    torch.testing.assert_close(torch.relu(ours["conv1_2"]), ref.relu1_2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.relu(ours["conv3_3"]), ref.relu3_3, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.relu(ours["conv5_3"]), ref.relu5_3, rtol=1e-4, atol=1e-4)
    info = extractor.backbone.as_dict()
    assert info["name"] == "stlpips-vgg16" and "not ImageNet" in info["pretraining"]
    assert build_feature_extractor("stlpips-vgg16").layers == ["conv5_3"]  # VGG16's conv5_4 counterpart


def test_stlpips_trunk_deep_features_reward_saturation_shallow_ones_do_not() -> None:
    """The measured reason the demo's perceptual loss uses conv1_2/conv2_2 (docs/gan-stage.md).

    On a blurry reconstruction (bicubic of a 4x downscale), boosting saturation by 40% brings
    the deep ST-LPIPS VGG16 features *closer* to HR's, while conv1_2 moves away, as a faithful
    distance should.
    """
    import numpy as np
    import skimage.data

    from esrgan.data import imresize
    from esrgan.losses import PerceptualLoss

    hr_np = skimage.data.astronaut()[:192, 160:352]
    sr_np = imresize(imresize(hr_np, 0.25), 4)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255

    hr, sr = tensor(hr_np), tensor(sr_np)
    luma = (sr * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    saturated = (luma + 1.4 * (sr - luma)).clamp(0, 1)
    ratio = {}
    with torch.no_grad():
        for layer in ("conv1_2", "conv3_3", "conv5_3"):
            loss = PerceptualLoss(layers={layer: 1.0}, backbone="stlpips-vgg16")
            ratio[layer] = loss(saturated, hr).item() / loss(sr, hr).item()
    assert ratio["conv1_2"] > 1.05, ratio
    assert ratio["conv3_3"] < 0.99 and ratio["conv5_3"] < 0.99, ratio
