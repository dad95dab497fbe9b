"""Synthetic depth scenes: determinism, exact depth, the lidar mask, and content that matters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from animlib.data import depth_layouts as dl
from animlib.data import depth_scenes as ds
from animlib.data.depth_scenes import Camera, DepthSceneConfig, Layout, make_depth_scenes, render_layouts
from animlib.depth import evaluate_pairs, lower_is_nearer, sample_point_pairs

torch.set_num_threads(1)


def _focal(width: int, fov: float) -> float:
    return (width / 2) / math.tan(math.radians(fov) / 2)


def _ground_only(height: float = 1.5) -> Layout:
    mats = np.asarray([[0.3, 0.3, 0.3, dl.ROAD, 1, 0.2], [0.6, 0.6, 0.6, dl.SIDEWALK, 1, 0.2]])
    return Layout(camera=Camera(position=(0.0, height, 0.0)), ground=(4.0, 2.0), ground_materials=mats)


def test_deterministic_per_seed_and_index():
    a = make_depth_scenes("street", 3, 32, seed=5)
    b = make_depth_scenes("street", 3, 32, seed=5)
    for k in ("images", "depth", "sky", "lidar"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    tail = make_depth_scenes("street", 2, 32, seed=5, start=1)  # items 1..2 alone
    assert torch.allclose(tail.depth, a.depth[1:], rtol=1e-6)
    assert torch.allclose(tail.images, a.images[1:], atol=1e-6)
    assert torch.equal(tail.lidar, a.lidar[1:])
    other = make_depth_scenes("street", 3, 32, seed=6)
    assert not torch.allclose(other.depth, a.depth)


def test_shapes_ranges_and_domains():
    for domain in ("indoor", "street"):
        s = make_depth_scenes(domain, 2, (32, 48), seed=0)
        assert s.images.shape == (2, 3, 32, 48) and s.images.dtype == torch.float32
        assert s.depth.shape == s.sky.shape == s.lidar.shape == (2, 1, 32, 48)
        assert float(s.images.min()) >= 0 and float(s.images.max()) <= 1
        assert bool((s.depth > 0).all())
        assert torch.equal(s.sparse_depth > 0, s.lidar)
        assert len(s) == 2 and set(s[0]) == {"image", "depth", "sky", "lidar"}
    indoor = make_depth_scenes("indoor", 2, 32, seed=0)
    assert not bool(indoor.sky.any()), "a room has no sky"
    assert torch.equal(indoor.lidar, ~indoor.sky), "indoor depth is dense (NYU-like)"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="domain"):
        make_depth_scenes("forest", 1)
    with pytest.raises(ValueError, match="positive"):
        make_depth_scenes("street", 0)
    with pytest.raises(ValueError, match="at least 4x4"):
        make_depth_scenes("street", 1, 2)
    with pytest.raises(ValueError, match="fov"):
        make_depth_scenes("street", 1, 16, config=DepthSceneConfig(fov_deg=0.0))


def test_exact_depth_of_a_box_a_sphere_and_the_ground():
    H = W = 33  # odd: the centre pixel's ray is the optical axis
    fov = 60.0
    f = _focal(W, fov)
    cfg = DepthSceneConfig(fov_deg=fov, noise=0.0)
    lay = _ground_only(1.5)
    box = np.asarray([[-1.0, 0.5, 10.0, 1.0, 2.5, 12.0]])
    mats = np.asarray([[0.5, 0.2, 0.2, dl.FLAT, 1.0, 0.1]])
    with_box = Layout(camera=lay.camera, boxes=box, box_materials=mats, ground=lay.ground,
                      ground_materials=lay.ground_materials)
    s = render_layouts([with_box, lay], (H, W), cfg)
    assert abs(float(s.depth[0, 0, H // 2, W // 2]) - 10.0) < 1e-4  # front face at z = 10
    # ground: row centre v = i + 0.5 sees the plane y = 0 at z-depth 1.5 f / (v - H/2)
    for i in range(H // 2 + 1, H):
        expected = 1.5 * f / (i + 0.5 - H / 2)
        assert abs(float(s.depth[1, 0, i, 3]) - expected) < 1e-4 * expected
    # above the horizon of a level camera there is only sky
    assert bool(s.sky[1, 0, : H // 2].all()) and not bool(s.sky[1, 0, H // 2 + 1 :].any())
    assert float(s.depth[1, 0, 0, 0]) == cfg.sky_depth
    # a sphere of radius 1 centred 8 m ahead at eye height: the centre ray hits it at 7 m
    sphere = Layout(camera=Camera(position=(0.0, 1.5, 0.0)), ellipsoids=np.asarray([[0.0, 1.5, 8.0, 1.0, 1.0, 1.0]]),
                    ellipsoid_materials=mats)
    s = render_layouts([sphere], (H, W), cfg)
    assert abs(float(s.depth[0, 0, H // 2, W // 2]) - 7.0) < 1e-4
    # a room seen from inside: the back wall 5 m ahead
    room = Layout(camera=Camera(position=(0.0, 1.2, 0.0)), room=np.asarray([-2.0, 0.0, -1.0, 2.0, 2.5, 5.0]),
                  room_materials=np.asarray([[0.5, 0.4, 0.3, dl.PLANKS, 2, 0.2]] * 3))
    s = render_layouts([room], (H, W), cfg)
    assert abs(float(s.depth[0, 0, H // 2, W // 2]) - 5.0) < 1e-4
    assert not bool(s.sky.any())


def test_depth_is_z_depth_not_ray_length():
    # A wall facing the camera is at the same z-depth at every pixel, though rays to its edges are longer.
    cfg = DepthSceneConfig(fov_deg=60.0, noise=0.0)
    wall = Layout(camera=Camera(position=(0.0, 0.0, 0.0)), boxes=np.asarray([[-50.0, -50.0, 6.0, 50.0, 50.0, 7.0]]),
                  box_materials=np.asarray([[0.5, 0.5, 0.5, dl.FLAT, 1, 0.1]]))
    s = render_layouts([wall], 16, cfg)
    assert torch.allclose(s.depth, torch.full_like(s.depth, 6.0), atol=1e-4)


def test_culling_changes_nothing():
    layouts = [ds.street_layout(np.random.default_rng([3, 1, i])) for i in range(3)]
    cfg = DepthSceneConfig(fov_deg=45.0)
    full = ds._render_chunk(layouts, 24, 24, cfg, 1, torch.device("cpu"))
    culled = ds._render_chunk([ds._visible(lay, 45.0, 24, 24) for lay in layouts], 24, 24, cfg, 1, torch.device("cpu"))
    assert sum(len(ds._visible(lay, 45.0, 24, 24).boxes) for lay in layouts) < sum(len(lay.boxes) for lay in layouts)
    assert torch.equal(full["depth"], culled["depth"])
    assert torch.allclose(full["color"], culled["color"], atol=1e-6)


def test_supersampling_keeps_centre_depth():
    one = make_depth_scenes("indoor", 2, 16, seed=2)
    two = make_depth_scenes("indoor", 2, 16, seed=2, config=DepthSceneConfig(supersample=2))
    assert torch.equal(one.depth, two.depth)
    assert float((one.images - two.images).abs().mean()) < 0.1


def test_lidar_mask_is_kitti_like():
    cfg = DepthSceneConfig()
    s = make_depth_scenes("street", 6, 48, seed=1)
    lid = s.lidar
    assert not bool((lid & s.sky).any()), "no returns from the sky"
    assert bool((s.depth[lid] <= cfg.lidar.max_range).all()), "no returns beyond the range"
    density = float(lid.float().mean())
    assert 0.03 < density < 0.5, density
    # no point above the highest beam (+2 deg) plus half a pixel, in any scene
    fov = ds.DEFAULT_FOV["street"]
    for lay, m in zip(s.layouts, lid):
        _, dirs, _ = ds._rays([lay], 48, 48, fov, 1, torch.device("cpu"))
        elev = torch.rad2deg(torch.atan2(dirs[0, :, 1], dirs[0][:, [0, 2]].norm(dim=-1))).reshape(48, 48)
        assert float(elev[m[0]].max()) <= cfg.lidar.elevation_top + fov / 48
    # the band covers the lower part of the image: the top rows have no points
    assert float(lid[:, :, :8].float().mean()) == 0.0


def test_ground_and_sky_alone_make_the_heuristic_perfect_but_streets_do_not():
    H = 48
    ground = render_layouts([_ground_only(h) for h in (1.4, 1.7)], H, DepthSceneConfig(fov_deg=45.0), domain="street")
    g = torch.Generator().manual_seed(0)
    pairs = sample_point_pairs(ground.depth, ~ground.sky, 500, generator=g)
    assert evaluate_pairs(lower_is_nearer(2, H, H), pairs)["accuracy"] == 1.0
    streets = make_depth_scenes("street", 24, H, seed=0)
    pairs = sample_point_pairs(streets.depth, ~streets.sky, 500, generator=g)
    acc = evaluate_pairs(lower_is_nearer(24, H, H), pairs)["accuracy"]
    assert acc < 0.93, f"street content should break 'lower is nearer' on many pairs, got {acc:.3f}"
    lidar = sample_point_pairs(streets.depth, streets.lidar, 500, generator=g)
    assert evaluate_pairs(lower_is_nearer(24, H, H), lidar)["accuracy"] > acc


def test_street_layouts_have_overhangs_and_objects():
    kinds = {"bridge": 0, "canopy": 0, "awning_or_arm": 0, "vehicle": 0}
    for i in range(40):
        lay = ds.street_layout(np.random.default_rng([0, 1, i]))
        b = lay.boxes
        kinds["bridge"] += int(((b[:, 3] - b[:, 0]) > 100).any())
        kinds["canopy"] += int(len(lay.ellipsoids) > 0)
        kinds["awning_or_arm"] += int(((b[:, 1] > 2.0) & ((b[:, 4] - b[:, 1]) < 0.3)).any())
        kinds["vehicle"] += int((np.isclose(b[:, 1], 0.3) | np.isclose(b[:, 1], 0.35)).any())
    assert all(v > 0 for v in kinds.values()), kinds


def test_flip_batches():
    s = make_depth_scenes("street", 2, 16, seed=0)
    b = s.batch(torch.tensor([0, 1]), torch.tensor([True, False]))
    assert torch.equal(b["depth"][0], s.depth[0].flip(-1)) and torch.equal(b["depth"][1], s.depth[1])
