"""animlib.backbones: the frozen VGG and MobileNetV2 load verified weights, and only those."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from animlib import backbones as B
from animlib import style as S
from animlib.files import sha256_file

LAYERS = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3")


@pytest.fixture(scope="module")
def random_extractor():
    return B.FeatureExtractor(LAYERS, "random")


def test_offline_craft_backbone_loads_and_is_verified():
    e = B.FeatureExtractor(LAYERS, "vgg16bn-craft")
    assert e.weights_sha256 == B.CRAFT_SHA256
    assert "CRAFT" in e.source and e.weights_path.name == "craft_mlt_25k.pth"
    assert not any(p.requires_grad for p in e.parameters())
    assert isinstance(e.features[-1], nn.ReLU)  # truncated right after conv_4_3's ReLU
    assert len(e.features) == e.layer_index["conv_4_3"] + 1
    feats = e(torch.rand(1, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "conv_1_2": (1, 64, 32, 32),
        "conv_2_2": (1, 128, 16, 16),
        "conv_3_3": (1, 256, 8, 8),
        "conv_4_3": (1, 512, 4, 4),
    }
    assert all((v >= 0).all() for v in feats.values())  # post-ReLU activations
    part = e(torch.rand(1, 3, 32, 32), ("conv_1_2",))  # stops early, same values
    assert list(part) == ["conv_1_2"]
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(e(x, ("conv_2_2",))["conv_2_2"], e(x)["conv_2_2"])
    with pytest.raises(ValueError, match="does not compute"):
        e(x, ("conv_5_1",))
    e.train()
    assert not e.training  # frozen batch norm even when a trainer calls .train()


def test_wrong_hash_raises(tmp_path):
    with pytest.raises(B.WeightsHashError, match="SHA-256"):
        B.FeatureExtractor(("conv_1_2",), "vgg16bn-craft", expected_sha256="0" * 64)
    bad = tmp_path / "craft_mlt_25k.pth"
    torch.save({"module.basenet.slice1.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(B.WeightsHashError):
        B.FeatureExtractor(("conv_1_2",), "vgg16bn-craft", weights_path=bad)


def test_vgg19_loading_path_with_local_file(tmp_path):
    import torchvision

    torch.manual_seed(3)
    # torchvision's file also holds the classifier (550 MB); the loader reads only ``features.*``.
    state = {
        f"features.{k}": v
        for k, v in torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"]).state_dict().items()
    }
    path = tmp_path / "vgg19-local.pth"
    torch.save(state, path)
    digest = sha256_file(path)
    e = B.FeatureExtractor(("conv_2_2",), "vgg19-imagenet", weights_path=path, expected_sha256=digest)
    assert e.weights_sha256 == digest and e.source.startswith("VGG19")
    torch.testing.assert_close(e.features[0].weight, state["features.0.weight"])
    torch.testing.assert_close(e.features[7].weight, state["features.7.weight"])  # conv2_2
    with pytest.raises(B.WeightsHashError):
        B.FeatureExtractor(("conv_2_2",), "vgg19-imagenet", weights_path=path, expected_sha256="deadbeef")
    # torchvision-style names carry a hash prefix that is checked automatically.
    named = tmp_path / "vgg19-00000000.pth"
    named.write_bytes(path.read_bytes())
    with pytest.raises(B.WeightsHashError):
        B.FeatureExtractor(("conv_2_2",), "vgg19-imagenet", weights_path=named)


def test_auto_never_downloads(monkeypatch):
    monkeypatch.setattr(B, "vgg19_cached_path", lambda: None)
    e = B.FeatureExtractor(("conv_1_2",), "auto")
    assert e.weights_name == "vgg16bn-craft"


def test_bad_layers_and_inputs(random_extractor):
    with pytest.raises(ValueError, match="unknown layer"):
        B.FeatureExtractor(("conv_9_9",), "random")
    with pytest.raises(ValueError, match="weights"):
        B.FeatureExtractor(("conv_1_2",), "imagenet")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        random_extractor(torch.rand(1, 1, 16, 16))



def test_norm_layer_by_name_and_layer_names():
    assert isinstance(B.norm_layer("batch", 6), nn.BatchNorm2d) and B.norm_layer("batch", 6).num_features == 6
    g = B.norm_layer("group", 4)
    assert isinstance(g, nn.GroupNorm) and (g.num_groups, g.num_channels) == (4, 4)  # min(8, channels) groups
    assert B.norm_layer("group", 32).num_groups == 8
    inst = B.norm_layer("instance", 5)
    assert isinstance(inst, nn.InstanceNorm2d) and inst.affine and inst.num_features == 5
    assert isinstance(B.norm_layer("none", 5), nn.Identity)
    with pytest.raises(ValueError, match="norm must be"):
        B.norm_layer("layer", 5)
    assert B.as_layer_names("conv_4_2") == ("conv_4_2",)
    assert B.as_layer_names(["conv_1_1", "conv_2_1"]) == ("conv_1_1", "conv_2_1")

def test_mobilenet_judge_loads_verified():
    m = B.mobilenet_v2_features()
    assert m.weights_sha256 == B.MOBILENET_V2_SHA256
    feats = m(torch.rand(1, 3, 64, 64))
    assert [tuple(v.shape[1:]) for v in feats.values()] == [
        (16, 32, 32),
        (24, 16, 16),
        (32, 8, 8),
        (64, 4, 4),
    ]
    x = torch.rand(1, 3, 64, 64)
    assert S.style_distance(x, x, m) == pytest.approx(0.0, abs=1e-6)
