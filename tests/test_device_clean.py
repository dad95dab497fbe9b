"""Device hygiene: work that runs on an accelerator computes with nothing left on the host.

The rule, for the library and the chapters: every tensor made for a computation lives on the device
of the data or the model it meets (``run.device`` in a chapter, the trainer's device in the
library). Tensor factories (``torch.zeros``, ``arange``, ``rand``, ...) get ``device=``; frozen
helper networks that a step holds (a target network, a perceptual VGG) follow the trainer's device;
results go through ``.cpu()`` before ``.numpy()``. Seeded draws stay on CPU generators, so that a
CPU run gives the same numbers as always: they are drawn on the host and moved with
``.to(device)``, never drawn with a CPU generator directly on the device (which fails on CUDA).
Per-step data are made where the model trains (faces rendered there, image pools kept there) or,
where they must come from the host, moved as bytes.

Without a GPU the check uses the ``meta`` device as the accelerator. Its tensors have shapes, dtypes
and a device but no values, and PyTorch refuses to mix them with host tensors exactly as it
refuses to mix CUDA and CPU tensors (a 0-d host scalar excepted, as on CUDA). What needs values is
stood in for by :class:`MetaAccelerator`: reading a number gives a placeholder, a copy to the host
gives zeros, ``nonzero`` finds every element, ``all`` holds and ``any`` finds nothing. Each test
runs a step or two of a method module's training (or one of its data functions) with
``device=meta``; a tensor left on the host inside it fails the test with PyTorch's device error.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

META = torch.device("meta")


#: random functions that take ``generator=``: CUDA refuses a generator of another device
_RANDOM = {"rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson", "rand_like",
           "randn_like", "randint_like", "uniform_", "normal_", "random_", "exponential_", "geometric_", "cauchy_",
           "log_normal_", "bernoulli_"}


def _host_zeros(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=t.dtype)


class MetaAccelerator(TorchFunctionMode):
    """The meta device as a stand-in accelerator: what needs values gets placeholders (see the module)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        t = args[0] if args and isinstance(args[0], torch.Tensor) else None
        gen = kwargs.get("generator")
        if name in _RANDOM and gen is not None:
            where = kwargs.get("device") or (t.device if t is not None else None)
            if where is not None and torch.device(where).type == "meta" and gen.device.type != "meta":
                raise RuntimeError(f"Expected a 'meta' device type for generator but found '{gen.device.type}'")
        if t is not None and t.is_meta:
            if name == "__bool__" and t.numel() == 1:
                return getattr(t, "_placeholder", False)
            if name in ("item", "__float__", "__int__", "__index__") and t.numel() == 1:
                value = 0 if t.dtype == torch.bool else (0.5 if t.is_floating_point() else 1)
                return func(torch.full((), value, dtype=t.dtype), *args[1:], **kwargs)
            if name == "tolist":
                return _host_zeros(t).tolist()
            if name == "cpu":
                return _host_zeros(t)
            if name in ("to", "copy_"):
                try:
                    return func(*args, **kwargs)
                except NotImplementedError:  # to the host: what a GPU would copy back
                    return func(_host_zeros(t), *args[1:], **kwargs)
            if name in ("all", "any"):
                out = func(*args, **kwargs)
                out._placeholder = name == "all"
                return out
            if name == "equal":
                return True
            if name == "cov":  # (its checks read values)
                return func(_host_zeros(t), *args[1:], **kwargs).to(META)
            if name == "nonzero":
                return torch.ones(t.shape, dtype=torch.bool).nonzero(**kwargs).to(META)
        if t is not None and not t.is_meta:  # host tensors written from the device: zeros
            if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].is_meta:
                return func(t, _host_zeros(args[1]), *args[2:], **kwargs)
            if name == "__setitem__" and len(args) > 2 and isinstance(args[2], torch.Tensor) and args[2].is_meta:
                return func(t, args[1], _host_zeros(args[2]))
        return func(*args, **kwargs)


class _Autocast(torch.autocast):
    """``torch.autocast`` that accepts the meta device (as a disabled context)."""

    def __init__(self, device_type, *args, **kwargs):
        if device_type == "meta":
            device_type, kwargs = "cpu", {**kwargs, "enabled": False}
        super().__init__(device_type, *args, **kwargs)


@pytest.fixture
def accel(monkeypatch):
    """The stand-in accelerator: yields the device to train on."""
    monkeypatch.setattr(torch, "autocast", _Autocast)
    with MetaAccelerator():
        yield META


def _on(device, *tensors):
    for x in tensors:
        assert x.device == device, f"expected a tensor on {device}, got one on {x.device}"


# ----------------------------------------------------------------------------------------------
# the stand-in catches what CUDA would refuse
# ----------------------------------------------------------------------------------------------
def test_the_stand_in_refuses_a_host_tensor_like_cuda(accel):
    model = torch.nn.Linear(4, 3).to(accel)
    out = model(torch.rand(2, 4).to(accel))
    with pytest.raises(RuntimeError, match="device"):
        out + torch.zeros(2, 3)  # a factory without device=
    with pytest.raises(RuntimeError, match="device"):
        torch.where(torch.rand(2, 1) < 0.5, out, out)  # a host mask
    with pytest.raises(TypeError, match="numpy"):  # as on CUDA
        out.detach().numpy()  # needs .cpu() first
    with pytest.raises(RuntimeError, match="generator"):
        torch.randint(3, (2,), generator=torch.Generator(), device=accel)  # a CPU generator on the device
    with pytest.raises(RuntimeError, match="generator"):
        torch.rand(2, device=accel).bernoulli_(generator=torch.Generator())
    out + torch.tensor(1.0)  # a 0-d host scalar is fine, as on CUDA
    assert out.detach().cpu().shape == (2, 3) and isinstance(float(out.sum()), float)


# ----------------------------------------------------------------------------------------------
# data made where the model trains
# ----------------------------------------------------------------------------------------------
def test_faces_render_blur_and_train_on_the_device(accel):
    from animlib.data import faces
    from animlib.face_regressor import regressor_batches, train_face_regressor

    g = torch.Generator().manual_seed(0)
    ident, mot = faces.sample_identity(3, g).to(accel), faces.sample_motion(3, g).to(accel)
    img = faces.render_faces(ident, mot, 32)
    _on(accel, img, faces.face_landmarks(ident, mot), faces.random_blur(img, generator=g))
    x, i, m = regressor_batches(32, 4, seed=0, device=accel)(0)
    _on(accel, x, i, m)
    train_face_regressor(32, steps=2, batch_size=4, device=accel, progress=False)


def test_scenes_render_on_the_device(accel):
    from animlib.data.depth_scenes import make_depth_scenes
    from animlib.data.scenes import SceneConfig, make_scenes

    s = make_scenes(2, SceneConfig(background="texture", extras=("flame", "branch")), seed=0, device=accel)
    _on(accel, s.frames, s.mask)
    d = make_depth_scenes("street", 2, 32, seed=0, device=accel)
    _on(accel, d.images, d.depth)


def test_clip_samplers_use_clips_on_the_device(accel):
    from animlib.action_classifier import labelled_clip_batches
    from animlib.video_ae import clip_batches

    clips = torch.rand(5, 6, 1, 8, 8).to(accel)
    _on(accel, clip_batches(clips, 3, frames=4)(0))
    _on(accel, *labelled_clip_batches(clips, (torch.arange(5) % 2).to(accel), 3, frames=4)(0))


def test_point_pairs_with_a_seeded_host_generator_on_device_depth(accel):
    from animlib import depth as D

    depth = torch.rand(2, 1, 16, 16).to(accel) + 0.5
    for kw in ({}, {"max_distance": None, "equal_ratio": 1.02}):
        pairs = D.sample_point_pairs(depth, None, 10, generator=torch.Generator().manual_seed(0), **kw)
        _on(accel, pairs.ya, pairs.relation)


# ----------------------------------------------------------------------------------------------
# one or two training steps of every method module
# ----------------------------------------------------------------------------------------------
def test_next_frame_step(accel):
    from animlib.engine import SupervisedStep, Trainer
    from animlib.nextframe import NextFrameConfig, NextFrameNet

    model = NextFrameNet(NextFrameConfig())
    t = Trainer(model, torch.optim.Adam(model.parameters()), SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])),
                device=accel, progress=False)
    t.fit(lambda s: (torch.rand(2, 2, 16, 16), torch.rand(2, 1, 16, 16)), 2)


def test_cinemagraph_generator_and_drqn_steps(accel):
    from dataclasses import replace

    from animlib import cinemagraph as C
    from animlib.data.scenes import SceneConfig, SceneStream
    from animlib.engine import Trainer
    from animlib.rl import EpisodeReplay, make_target

    scene = SceneConfig(frames=4)
    cfg = C.CinemagraphConfig(widths=(8, 8), hidden=8, kernel_hidden=8, q_hidden=8, disc_widths=(8,))
    G, Dn = C.CinemagraphGenerator(cfg), C.FrameDiscriminator(3, (8,))
    Trainer({"g": G, "d": Dn}, {"g": torch.optim.Adam(G.parameters()), "d": torch.optim.Adam(Dn.parameters())},
            C.GeneratorStep(adv_weight=0.1, disc_frames=2), device=accel,
            progress=False).fit(SceneStream(2, scene, seed=0, device=accel), 1)
    # as chapter 2 builds it: the target network is made before the trainer moves the DRQN
    net = C.CinemagraphDRQN(replace(cfg, num_actions=scene.num_classes))
    target = make_target(net)
    sch = C.DRQNSchedule(warmup=0, replay_capacity=4, replay_batch=2)
    step = C.DRQNStep(schedule=sch, target_net=target, generator=torch.Generator().manual_seed(0),
                      replay=EpisodeReplay(4, scene.frames, (3, scene.size, scene.size), torch.float16))
    Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters())}, step, device=accel,
            progress=False).fit(SceneStream(2, scene, seed=0), 2)
    out = C.evaluate_policy(net, torch.rand(2, scene.frames, 3, scene.size, scene.size), torch.zeros(2).long())
    C.best_matching_accuracy(out["actions"], torch.zeros_like(out["actions"]), scene.num_classes)


def test_style_transfer_fast_style_and_depth_steps(accel):
    from animlib import depth as D
    from animlib import fast_style as FS
    from animlib import style as S
    from animlib.backbones import FeatureExtractor
    from animlib.engine import Trainer

    ext = FeatureExtractor(("conv_1_2", "conv_2_2"), weights="random")
    layers = dict(content_layers=("conv_2_2",), style_layers=("conv_1_2", "conv_2_2"))
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    net = D.Hourglass(D.HourglassConfig(width=0.125)).to(accel)
    term = D.DepthLossTerm(net, content)
    for optimizer in ("lbfgs", "adam"):
        S.stylize(content, style, extractor=ext, steps=1, optimizer=optimizer, alpha=S.alpha_ramp(32, 32),
                  extra_losses={"depth": (1.0, term)}, device=accel, progress=False, **layers)
    S.synthesize_texture(style, (32, 32), extractor=ext, steps=1, device=accel, progress=False, **layers)
    S.match_color(content.to(accel), style)
    FS.train_fast_style(style, [torch.rand(3, 40, 48), torch.rand(3, 36, 36)], ext, steps=1,
                        config=FS.TransformerConfig(base_channels=4, n_residual=1), batch_size=2, image_size=32,
                        device=accel, progress=False, **layers)
    hg = D.Hourglass(D.HourglassConfig(width=0.125))
    batch = {"image": torch.rand(2, 3, 32, 32), "depth": torch.rand(2, 1, 32, 32) + 0.5,
             "valid": torch.ones(2, 1, 32, 32, dtype=torch.bool)}
    for sparse in (False, True):
        Trainer(hg, torch.optim.Adam(hg.parameters()), D.RelativeDepthStep(n_pairs=16, sparse=sparse), device=accel,
                progress=False).fit(lambda s: batch, 1)


def test_vae_vaegan_and_toy_gan_steps(accel):
    from animlib import gan
    from animlib import vae as V
    from animlib import vaegan as VG
    from animlib.data.faces import SyntheticFaces
    from animlib.engine import Trainer

    faces = SyntheticFaces(4, 16, seed=0, uint8=True)
    cfg = V.ConvVAEConfig(image_size=16, latent_dim=4, width=4, dec_width=4)
    V.train_vae(V.ConvVAE(cfg), lambda s: (faces.image(slice(0, 4)),), 2, warmup_steps=1, device=accel, progress=False)
    vae, d = V.ConvVAE(cfg), VG.VAEGANDiscriminator(VG.VAEGANDiscriminatorConfig(image_size=16, width=4, hidden=8))
    Trainer({"vae": vae, "d": d}, {"vae": torch.optim.Adam(vae.parameters()), "d": torch.optim.Adam(d.parameters())},
            VG.VAEGANStep(VG.VAEGANWeights(), adv_warmup_steps=1, kl_warmup_steps=1), device=accel,
            progress=False).fit(lambda s: faces.image(slice(0, 4)), 2)
    g, dd = gan.ToyGenerator(), gan.ToyDiscriminator()
    Trainer({"g": g, "d": dd}, {"g": torch.optim.Adam(g.parameters()), "d": torch.optim.Adam(dd.parameters())},
            gan.ToyGANStep(batch_size=8, generator=torch.Generator().manual_seed(0)), device=accel,
            progress=False).fit(lambda s: torch.rand(8, 2), 1)
    _on(accel, g.sample(3, generator=torch.Generator().manual_seed(0)))


def test_video_autoencoders_and_action_classifier(accel):
    from animlib import video_ae as VA
    from animlib.action_classifier import train_action_classifier

    cfg = VA.GRUAEConfig(frames=4, image_size=16, z_dim=4, gru_hidden=4, widths=(4, 4))
    clips = torch.rand(5, 6, 1, 16, 16)
    for kind in ("gru", "per_frame", "clip_latent"):
        VA.train_autoencoder(VA.build_autoencoder(kind, cfg), VA.clip_batches(clips.to(accel), 2, frames=4), 1,
                             foreground_weight=10.0, device=accel, progress=False)
    train_action_classifier(clips.to(accel), torch.arange(5) % 2, 1, batch_size=2, frames=4, width=4, device=accel,
                            progress=False)


def test_reenactment_steps(accel):
    from animlib import reenact as RE
    from animlib.backbones import FeatureExtractor

    pool = RE.FacePool(3, 3, 32, seed=0)
    _on(accel, *pool.batch(2, 1, torch.Generator().manual_seed(0), device=accel))
    lazy = RE.FacePool(3, 3, 32, seed=0, device=accel, cache=False)  # rendered episode by episode, on the device
    _on(accel, *lazy.batch(2, 1, torch.Generator().manual_seed(0), device=accel), lazy.frames(torch.arange(3)))
    cfg = RE.ReenactConfig(image_size=32, width=4, n_res=1, embed_dim=8)
    vgg = FeatureExtractor(("conv_1_2", "conv_2_2"), weights="random")  # made on the host, as a user would
    step = RE.ReenactStep(vgg=vgg, vgg_weight=1.0)
    for driver in ("landmarks", "image"):
        t = RE.meta_train(pool, 1, config=RE.ReenactConfig(image_size=32, width=4, n_res=1, embed_dim=8, driver=driver),
                          batch_size=2, k=2, step=step, device=accel, progress=False)
    RE.train_warp(pool, 1, config=cfg, batch_size=2, device=accel, progress=False)
    e, g, d = t.raw_models["e"], t.raw_models["g"], t.raw_models["d"]
    RE.finetune(e, g, d, pool.images[0, :2].float() / 255, pool.lm_images[0, :2].float() / 255, 1, batch_size=2,
                step=step, device=accel)
