"""Relative depth: the loss, pair sampling, metrics, the hourglass, the depth loss, the loaders."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from animlib.data.depth_scenes import make_depth_scenes
from animlib.data.prepared import DiwPairs, KittiDepth, NyuDepthV2
from animlib.depth import (
    _TOPOLOGY,
    BLOCK_TABLE,
    DepthLossTerm,
    Hourglass,
    HourglassConfig,
    InceptionBlock,
    PointPairs,
    RelativeDepthStep,
    depth_loss,
    evaluate_pairs,
    gather_pairs,
    lower_is_nearer,
    normalize_depth,
    ordinal_accuracy,
    predict_depth,
    relative_depth_loss,
    sample_point_pairs,
    training_pairs,
    whdr,
)
from animlib.engine import Trainer

torch.set_num_threads(1)
LOG1PE = math.log(1 + math.e)  # 1.3132616875...
LOG1PEINV = math.log(1 + math.exp(-1))  # 0.3132616875...


# ----------------------------------------------------------------------------- the loss


def test_relative_depth_loss_known_values_for_all_three_relations():
    z_x, z_y = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    # x nearer (correct order: z_x < z_y): log(1 + e^-1); x farther (wrong): log(1 + e); equal: (0 - 1)^2
    per = relative_depth_loss(z_x, z_y, torch.tensor([-1, 1, 0]), reduction="none")
    assert torch.allclose(per, torch.tensor([LOG1PEINV, LOG1PE, 1.0]), atol=1e-6)
    mean = relative_depth_loss(z_x, z_y, torch.tensor([-1, 1, 0]))
    assert abs(float(mean) - (LOG1PEINV + LOG1PE + 1.0) / 3) < 1e-6
    assert abs(float(relative_depth_loss(z_x, z_y, torch.tensor([-1, 1, 0]), "sum")) - (LOG1PEINV + LOG1PE + 1)) < 1e-5
    # symmetric: swapping the points and negating the relation changes nothing
    assert torch.allclose(relative_depth_loss(z_y, z_x, torch.tensor([1, -1, 0]), reduction="none"), per)
    # equal pairs with a gap of 3 cost 9 (the official criterion's squared term, not a hinge)
    assert float(relative_depth_loss(torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([0]))) == 9.0


def test_relative_depth_loss_matches_the_official_criterion_and_does_not_overflow():
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(200, generator=g) * 3, torch.randn(200, generator=g) * 3
    gt = torch.randint(-1, 2, (200,), generator=g)
    # relative_depth.lua: mask * log(1 + exp(-gt (zA - zB))) + (1 - mask) (zA - zB)^2, divided by n
    mask = gt.abs().float()
    ref = (mask * torch.log1p(torch.exp(-gt * (z_a - z_b))) + (1 - mask) * (z_a - z_b) ** 2).mean()
    assert torch.allclose(relative_depth_loss(z_a, z_b, gt), ref, atol=1e-5)
    big = relative_depth_loss(torch.tensor([1000.0]), torch.tensor([0.0]), torch.tensor([-1]))
    assert torch.isfinite(big) and abs(float(big) - 1000.0) < 1e-3


def test_relative_depth_loss_gradient_pushes_the_right_way():
    z_x = torch.tensor([0.0], requires_grad=True)
    z_y = torch.tensor([0.0], requires_grad=True)
    relative_depth_loss(z_x, z_y, torch.tensor([-1])).backward()  # x should become nearer
    assert float(z_x.grad) > 0 > float(z_y.grad)  # gradient descent lowers z_x, raises z_y


def test_bad_pairs_raise_clear_errors():
    with pytest.raises(ValueError, match="relation must hold only"):
        relative_depth_loss(torch.zeros(2), torch.zeros(2), torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="same shape"):
        relative_depth_loss(torch.zeros(2), torch.zeros(3), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="no point pairs"):
        relative_depth_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="ordered pair"):
        ordinal_accuracy(torch.zeros(2), torch.ones(2), torch.zeros(2))


# ----------------------------------------------------------------------------- metrics


def test_ordinal_accuracy_and_whdr_on_hand_cases():
    z_x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    z_y = torch.tensor([1.0, 0.0, 2.0, 5.0])
    rel = torch.tensor([-1, -1, 1, 0])
    # right, wrong, tie (half), equal pair (left out): (1 + 0 + 0.5) / 3
    assert ordinal_accuracy(z_x, z_y, rel) == pytest.approx(0.5)
    assert ordinal_accuracy(z_x, z_y, rel, ties=0.0) == pytest.approx(1 / 3)
    # WHDR: predicted relations (-1, +1, 0, -1) against (-1, -1, +1, 0): three of four disagree
    assert whdr(z_x, z_y, rel) == pytest.approx(0.75)
    # with delta = 1.5 only the last pair is "ordered" (-1), so all four disagree
    assert whdr(z_x, z_y, rel, delta=1.5) == pytest.approx(1.0)
    # weights: only the first pair counts
    assert whdr(z_x, z_y, rel, weights=torch.tensor([1.0, 0, 0, 0])) == pytest.approx(0.0)
    # ratio form for metric depth: 2/1 > 1.5 -> farther; 1.2/1 within 1.5 -> equal
    assert whdr(torch.tensor([2.0, 1.2]), torch.tensor([1.0, 1.0]), torch.tensor([1, 0]), delta=0.5, ratio=True) == 0.0
    with pytest.raises(ValueError, match="positive"):
        whdr(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([1]), ratio=True)


def test_lower_is_nearer_heuristic():
    h = lower_is_nearer(2, 5, 3)
    assert h.shape == (2, 1, 5, 3)
    pairs = PointPairs(*(torch.tensor(v) for v in ([0, 0, 1], [4, 0, 2], [0, 0, 1], [1, 4, 2], [0, 0, 2], [-1, 1, 1])))
    # row 4 below row 1: nearer (right); row 0 above row 4 -> farther (right); same row: tie
    assert evaluate_pairs(h, pairs)["accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)


# ----------------------------------------------------------------------------- pair sampling


def _sparse_depth(seed=0, b=3, h=64, w=80, density=0.1):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(b, 1, h, w, generator=g) * 50 + 1
    mask = torch.rand(b, 1, h, w, generator=g) < density
    return torch.where(mask, depth, torch.zeros_like(depth)), mask


def test_sample_point_pairs_obeys_both_rules():
    depth, mask = _sparse_depth()
    depth[1, 0, mask[1, 0]] = depth[1, 0, mask[1, 0]] * 0.2 + 10  # a narrower range in image 1
    g = torch.Generator().manual_seed(1)
    pairs = sample_point_pairs(depth, None, 500, generator=g)
    assert len(pairs) == 3 * 500
    assert float(pairs.distance().max()) <= 40.0
    assert bool((pairs.distance() > 0).all())
    za, zb = depth[pairs.b, 0, pairs.ya, pairs.xa], depth[pairs.b, 0, pairs.yb, pairs.xb]
    assert bool(((za > 0) & (zb > 0)).all()), "both points must carry a lidar value"
    for b in range(3):
        d = depth[b, 0][mask[b, 0]]
        rng = float(d.max() - d.min())
        sel = pairs.b == b
        assert bool(((za[sel] - zb[sel]).abs() >= 0.01 * rng).all())
    assert torch.equal(pairs.relation.long(), torch.sign(za - zb).long())
    # the rule removes pairs: with depths that differ by under 1 % of the range, none survive
    flat = torch.zeros(1, 1, 64, 200)
    flat[0, 0, :, :10] = 10.0 + torch.rand(64, 10, generator=g) * 0.5  # differences < 0.5
    flat[0, 0, 0, 199], flat[0, 0, 63, 199] = 1.0, 100.0  # range 99, both > 40 px from everything
    few = sample_point_pairs(flat, None, 200, generator=g)
    assert len(few) == 0


def test_sample_point_pairs_distance_rule_and_generator():
    depth, _ = _sparse_depth(density=0.3)
    a = sample_point_pairs(depth, None, 300, max_distance=5, generator=torch.Generator().manual_seed(3))
    b = sample_point_pairs(depth, None, 300, max_distance=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.ya, b.ya) and torch.equal(a.relation, b.relation)
    assert float(a.distance().max()) <= 5.0
    anywhere = sample_point_pairs(depth, None, 300, max_distance=None, generator=torch.Generator().manual_seed(3))
    assert float(anywhere.distance().max()) > 40.0


def test_dense_pairs_label_equal_by_ratio():
    depth = torch.full((1, 1, 16, 16), 10.0)
    depth[..., 8:] = 10.1  # ratio 1.01: "equal" under 1.02
    depth[..., :2, :] = 30.0
    pairs = sample_point_pairs(depth, torch.ones_like(depth, dtype=torch.bool), 400, max_distance=None,
                               equal_ratio=1.02, generator=torch.Generator().manual_seed(0))
    za, zb = gather_pairs(depth, pairs)[:2]
    ratio = torch.maximum(za, zb) / torch.minimum(za, zb)
    assert torch.equal(pairs.relation == 0, ratio < 1.02)
    assert bool((pairs.relation == 0).any()) and bool((pairs.relation != 0).any())
    mixed = training_pairs(depth, None, 64)
    assert len(mixed) == 64


def test_sample_point_pairs_bad_input():
    with pytest.raises(ValueError, match="shape"):
        sample_point_pairs(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="n_pairs"):
        sample_point_pairs(torch.ones(1, 1, 4, 4), n_pairs=0)
    none = sample_point_pairs(torch.zeros(1, 1, 8, 8), n_pairs=5)  # no valid pixel: no pairs, no error
    assert len(none) == 0


# ----------------------------------------------------------------------------- blocks and the hourglass


@pytest.mark.parametrize("cin,cout,kernels,reduce,bn", [(8, 16, (3, 5, 7), 4, True), (5, 12, (3, 7, 11), 3, False),
                                                         (16, 9, (1, 3), 2, True)])
def test_inception_block_shapes(cin, cout, kernels, reduce, bn):
    block = InceptionBlock(cin, cout, kernels, reduce, batch_norm=bn)
    assert block.branches == len(kernels) + 1
    y = block(torch.randn(2, cin, 9, 13))
    assert y.shape == (2, cout, 9, 13)
    assert bool((y >= 0).all()), "every branch ends in a ReLU"
    with pytest.raises(ValueError, match="expects"):
        block(torch.randn(2, cin + 1, 9, 13))


def test_inception_block_equals_four_separate_branches():
    """The stacked 1x1 convolutions and shared BatchNorms compute exactly Chen et al.'s four branches."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    block = InceptionBlock(6, 8, (3, 5, 7), 3).train()
    x = torch.randn(4, 6, 10, 11)
    w, b = block.reduce.weight, block.reduce.bias

    def bn_relu(t):  # BatchNorm without affine parameters in training mode, then ReLU
        return F.relu(F.batch_norm(t, None, None, training=True, eps=1e-5))

    outs = [bn_relu(F.conv2d(x, w[:2], b[:2]))]  # branch 0: 1x1 to 8/4 = 2 channels
    for i, conv in enumerate(block.convs):  # branches 1-3: 1x1 reduction to 3, then k x k to 2
        lo = 2 + 3 * i
        r = bn_relu(F.conv2d(x, w[lo : lo + 3], b[lo : lo + 3]))
        outs.append(bn_relu(conv(r)))
    torch.testing.assert_close(block(x), torch.cat(outs, 1), atol=1e-5, rtol=1e-5)


def test_inception_block_rejects_bad_configs():
    with pytest.raises(ValueError, match="split evenly"):
        InceptionBlock(8, 10, (3, 5, 7))
    with pytest.raises(ValueError, match="odd"):
        InceptionBlock(8, 12, (3, 4))


def _expected_params(width: float = 1.0) -> int:
    """Parameters of the released hourglass, counted from the table (independent of the module)."""
    def sc(c):
        return 4 * max(1, round(c * width / 4))

    def block(item):
        letter, reduce = (item, None) if isinstance(item, str) else item
        s = BLOCK_TABLE[letter]
        cin, cout = sc(s.in_channels), sc(s.out_channels)
        r = max(1, round((reduce or s.reduce) * width))
        each = cout // 4
        n = cin * each + each  # the plain 1x1 branch
        for k in s.kernels:
            n += cin * r + r + r * each * k * k + each
        return n

    total = 3 * sc(128) * 49 + sc(128) + 2 * sc(128)  # stem conv + affine BN
    total += sc(64) * 9 + 1  # head
    for level in _TOPOLOGY:
        total += sum(block(b) for key in ("pre", "post", "skip") for b in level[key])
    return total


@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
def test_hourglass_parameter_count_matches_the_table(width):
    net = Hourglass(HourglassConfig(width=width))
    assert sum(p.numel() for p in net.parameters()) == _expected_params(width)


def test_hourglass_shapes_options_and_errors():
    for cfg in (HourglassConfig(width=0.125), HourglassConfig(width=0.125, batch_norm=False, upsample="bilinear")):
        net = Hourglass(cfg)
        z = net(torch.rand(2, 3, 32, 48))
        assert z.shape == (2, 1, 32, 48) and z.dtype == torch.float32
        z.mean().backward()
        assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="multiples of 16"):
        Hourglass(HourglassConfig(width=0.125))(torch.rand(1, 3, 40, 48))
    with pytest.raises(ValueError, match="expects images"):
        Hourglass(HourglassConfig(width=0.125))(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="width"):
        Hourglass(HourglassConfig(width=0.0))


def test_hourglass_learns_ordinal_depth_better_than_the_heuristic():
    torch.manual_seed(0)
    train = make_depth_scenes("street", 96, 32, seed=10)
    test = make_depth_scenes("street", 24, 32, seed=11)
    pairs = sample_point_pairs(test.depth, ~test.sky, 400, generator=torch.Generator().manual_seed(0))
    heuristic = evaluate_pairs(lower_is_nearer(24, 32, 32), pairs)["accuracy"]
    net = Hourglass(HourglassConfig(width=0.125))
    untrained = evaluate_pairs(predict_depth(net, test.images), pairs)["accuracy"]
    opt = torch.optim.Adam(net.parameters(), 3e-3)

    def data(step):
        g = torch.Generator().manual_seed(step)
        idx = torch.randint(len(train), (12,), generator=g)
        b = train.batch(idx, torch.rand(12, generator=g) < 0.5)
        return {"image": b["image"], "depth": b["depth"]}

    trainer = Trainer(net, opt, RelativeDepthStep(n_pairs=256), device="cpu", progress=False)
    trainer.fit(data, 50)
    learned = evaluate_pairs(predict_depth(net, test.images), pairs)["accuracy"]
    assert learned > heuristic > untrained - 0.2, (learned, heuristic, untrained)
    assert learned > untrained + 0.1


@pytest.mark.slow
def test_full_profile_one_step():
    """The released network at the source's fine-tuning size (224x288), one step at batch 1 on the CPU."""
    torch.manual_seed(0)
    net = Hourglass(HourglassConfig())  # width 1: 5.4 M parameters
    assert sum(p.numel() for p in net.parameters()) > 5_000_000
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    depth, _ = _sparse_depth(b=1, h=224, w=288, density=0.05)
    batch = {"image": torch.rand(1, 3, 224, 288), "depth": depth}
    trainer = Trainer(net, opt, RelativeDepthStep(n_pairs=800, sparse=True), device="cpu", progress=False)
    before = [p.detach().clone() for p in net.parameters()]
    hist = trainer.fit([batch], 1)
    assert math.isfinite(hist[-1]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


# ----------------------------------------------------------------------------- depth loss


def test_depth_loss_normalises_per_image():
    a = torch.randn(2, 1, 6, 7)
    assert float(depth_loss(3 * a + 5, a)) < 1e-8, "scale and offset of a relative depth map do not matter"
    x = torch.tensor([[[[1.0, -1.0]]]])
    assert float(depth_loss(x, -x)) == pytest.approx(4.0, rel=1e-5)  # normalised maps (1, -1) vs (-1, 1)
    assert float(depth_loss(x, -x, normalize=False)) == pytest.approx(4.0)
    assert float(depth_loss(x * 10, -x, normalize=False)) == pytest.approx(121.0)
    n = normalize_depth(a)
    assert torch.allclose(n.mean((1, 2, 3)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(n.std((1, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    with pytest.raises(ValueError, match="differ in shape"):
        depth_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_depth_loss_term_gives_gradients_to_the_image_only():
    torch.manual_seed(0)
    net = Hourglass(HourglassConfig(width=0.125))
    content = torch.rand(1, 3, 64, 64)
    term = DepthLossTerm(net, content, downsample=2)
    assert float(term(content)) < 1e-8
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss = term(x)
    loss.backward()
    assert float(loss.detach()) > 0 and x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not net.training


# ----------------------------------------------------------------------------- loaders


def _png16(path, array):
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)


def test_loaders_read_the_data_scripts_layouts(tmp_path):
    # KITTI: uint16 sparse depth, metres = value / 256
    kitti = tmp_path / "kitti"
    rgb = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    sparse = np.zeros((32, 48), np.uint16)
    sparse[20, 10], sparse[25, 30] = 256 * 12, 256 * 7
    _png16(kitti / "images/a_c0.png", rgb)
    _png16(kitti / "sparse_depth/a_c0.png", sparse)
    with open(kitti / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "sparse_depth", "dense_depth", "split", "source_image", "crop_x", "scale", "points"])
        w.writerow(["images/a_c0.png", "sparse_depth/a_c0.png", "", "val", "a.png", 0, "1.0", 2])
    (kitti / "PREPARED").write_text("ok")
    item = KittiDepth(kitti, split="val")[0]
    assert item["image"].shape == (3, 32, 48)
    assert float(item["depth"][0, 20, 10]) == pytest.approx(12.0, abs=1e-3)
    assert int(item["valid"].sum()) == 2
    assert KittiDepth(kitti, size=(16, 24))[0]["depth"].shape == (1, 16, 24)
    # NYU: uint16 millimetres
    nyu = tmp_path / "nyu"
    _png16(nyu / "rgb/00000.png", rgb)
    _png16(nyu / "depth/00000.png", np.full((32, 48), 2500, np.uint16))
    with open(nyu / "index.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "depth", "index"], ["rgb/00000.png", "depth/00000.png", 0]])
    (nyu / "PREPARED").write_text("ok")
    assert float(NyuDepthV2(nyu)[0]["depth"].mean()) == pytest.approx(2.5, abs=1e-3)
    # DIW: one pair per photo
    diw = tmp_path / "diw"
    _png16(diw / "images/test/x.png", rgb)
    (diw / "pairs.json").write_text(json.dumps([{"image": "images/test/x.png", "split": "test", "a": [3, 4], "b": [10, 20],
                                                  "relation": "<", "ordinal": -1, "width": 48, "height": 32}]))
    (diw / "PREPARED").write_text("ok")
    assert DiwPairs(diw)[0]["pair"].tolist() == [3, 4, 10, 20, -1]
    assert DiwPairs(diw, size=(16, 24))[0]["pair"].tolist() == [1, 2, 5, 10, -1]


@pytest.mark.parametrize("cls,script", [(KittiDepth, "kitti_depth.py"), (NyuDepthV2, "nyu_depth_v2.py"), (DiwPairs, "diw.py")])
def test_loaders_name_the_script_when_data_is_missing(tmp_path, cls, script):
    with pytest.raises(FileNotFoundError, match=script):
        cls(None)
    with pytest.raises(FileNotFoundError, match=script):
        cls(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match=script):
        cls(tmp_path / "half")  # no PREPARED marker


# ----------------------------------------------------------------------------- exercises


def test_chapter_4_self_checks_pass_and_fail(capsys):
    import torch.nn.functional as F

    from animlib.exercises import ch04

    def loss_ok(z_x, z_y, r):
        return torch.where(r == 0, (z_x - z_y) ** 2, F.softplus(r * (z_y - z_x))).mean()

    def loss_no_equal(z_x, z_y, r):
        return F.softplus(r * (z_y - z_x))[r != 0].mean()

    assert ch04.check_relative_loss(loss_ok)
    assert not ch04.check_relative_loss(loss_no_equal)
    assert "equal pairs" in capsys.readouterr().out
    assert not ch04.check_relative_loss(lambda *a: None)
    assert not ch04.check_relative_loss(lambda *a: 1 / 0)  # raises: reported, not re-raised

    assert ch04.check_pair_rule(lambda a, b, d, r: (d <= 40) & ((a - b).abs() >= 0.01 * r))
    assert not ch04.check_pair_rule(lambda a, b, d, r: (d < 40) & ((a - b).abs() >= 0.01 * r))
    assert not ch04.check_pair_rule(lambda a, b, d, r: None)

    def acc_ok(z_x, z_y, r):
        keep = r != 0
        s = torch.sign(z_x - z_y)[keep]
        return torch.where(s == 0, 0.5, (s == r[keep]).float()).mean().item()

    def acc_ties_wrong(z_x, z_y, r):
        keep = r != 0
        return (torch.sign(z_x - z_y)[keep] == r[keep]).float().mean().item()

    assert ch04.check_ordinal_accuracy(acc_ok)
    assert not ch04.check_ordinal_accuracy(acc_ties_wrong)
    assert not ch04.check_ordinal_accuracy(None)
