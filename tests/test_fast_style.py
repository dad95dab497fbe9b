"""animlib.fast_style: Johnson et al.'s transformer network, its training and resume."""

from __future__ import annotations

import pytest
import torch

from animlib import backbones as B
from animlib import fast_style as FS

LAYERS = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3")


@pytest.fixture(scope="module")
def random_extractor():
    return B.FeatureExtractor(LAYERS, "random")


@pytest.mark.parametrize(
    "config", [FS.TransformerConfig.quick(), FS.TransformerConfig(upsample="transposed", norm="batch")]
)
def test_transformer_net_shapes(config):
    net = FS.TransformerNet(config)
    y = net(torch.rand(2, 3, 36, 44))
    assert y.shape == (2, 3, 36, 44) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 30, 32))
    out = FS.fast_stylize(net, torch.rand(3, 34, 30))  # padded to multiples of 4 and cropped back
    assert out.shape == (1, 3, 34, 30)


def test_train_fast_style_learns_and_resumes(tmp_path, random_extractor):
    style = torch.rand(1, 3, 32, 32)
    pool = torch.rand(3, 3, 40, 40)
    kw = dict(
        steps=4,
        config=FS.TransformerConfig(base_channels=4, n_residual=1),
        batch_size=2,
        image_size=16,
        progress=False,
        lr=1e-2,
        checkpoint_dir=tmp_path,
    )
    r = FS.train_fast_style(style, pool, random_extractor, **kw)
    assert len(r.history) == 4 and r.history[0]["loss"] > r.history[-1]["loss"]
    assert (tmp_path / "last.pt").exists() and not r.raw_models["transformer"].training
    r2 = FS.train_fast_style(style, pool, random_extractor, **{**kw, "steps": 6}, resume=True)
    assert [h["step"] for h in r2.history] == [1, 2, 3, 4, 5, 6]


def test_full_profile_one_step():
    # The full-profile transformer (Johnson's size) for one training step at batch 1 on the CPU.
    e = B.FeatureExtractor(LAYERS, "vgg16bn-craft")
    r = FS.train_fast_style(
        torch.rand(1, 3, 64, 64),
        torch.rand(1, 3, 64, 64),
        e,
        steps=1,
        config=FS.TransformerConfig.full(),
        batch_size=1,
        image_size=64,
        progress=False,
        device="cpu",
    )
    assert sum(p.numel() for p in r.raw_models["transformer"].parameters()) > 1_500_000  # Johnson's net has ~1.7 M parameters
    assert len(r.history) == 1 and torch.isfinite(torch.tensor(r.history[0]["loss"]))


def test_train_fast_style_accepts_a_dataloader(random_extractor):
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.rand(6, 3, 16, 16)), batch_size=2, shuffle=False)
    cfg = FS.TransformerConfig(base_channels=4, n_residual=1)
    r = FS.train_fast_style(
        torch.rand(1, 3, 16, 16), loader, random_extractor, steps=4, config=cfg, progress=False
    )
    assert len(r.history) == 4  # wraps around the 3-batch epoch
    batches = [torch.rand(2, 3, 16, 16)]  # a list of 4-D batches is an iterable of batches, not a pool
    assert (
        len(
            FS.train_fast_style(
                torch.rand(1, 3, 16, 16), batches, random_extractor, steps=2, config=cfg, progress=False
            ).history
        )
        == 2
    )
    with pytest.raises(ValueError, match="training batches"):
        FS.train_fast_style(
            torch.rand(1, 3, 16, 16),
            [[torch.rand(2, 1, 16, 16)]],
            random_extractor,
            steps=1,
            config=cfg,
            progress=False,
        )
