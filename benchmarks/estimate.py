"""The book's full profile on one GPU, estimated on paper from counted FLOPs.

For every training run a chapter makes in the ``full`` profile, this module runs the library's own
training code for one and for two steps at the full profile's image sizes and widths, counts the
FLOPs of both with ``torch.utils.flop_counter.FlopCounterMode`` and keeps the difference: the cost
of one step, without the set-up (style targets, first evaluations). Batches are made small here
(``COUNT_BATCH`` items) and the count is scaled to the full batch, which is exact for these
networks (every layer acts on each item separately). The same difference counts the kernels one
step launches (ATen operators that are not views), those of data made on the training device
(rendered scenes and faces) included.

What the host still does for every step of the full profile on a GPU is timed on this CPU at the
full batch (:attr:`Run.data`: drawing parameters, gathering stored images), as the CPU time of one
thread, the least of five calls (other work on a shared machine does not inflate it), and the
bytes it hands to the device are counted and priced at an assumed host-to-device rate. Batches that DataLoader workers make are off the training thread and not counted.

A run's time on the GPU is then ``steps × (max(FLOPs / rate, kernels × launch) + host data)``: a
step is either compute-bound or, for small networks, bound by launching kernels, and the host's
part is not overlapped with it. The assumed rate, launch cost and copy rate are arguments
(:func:`estimate`) and are printed with the table.
Not counted: evaluation and figures (inference only, a small part of each chapter), the depth
loss term of chapter 4's depth-aware variants, the 2-D toy GAN, checkpoints.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

COUNT_BATCH = 2  # items per batch while counting (the count is scaled to the full batch)

#: assumed GPU: an NVIDIA A100 running bf16 autocast at 20 % of its 312 TFLOP/s dense peak
#: (small convolutional networks rarely reach more), 10 microseconds per launched kernel
DEFAULT_TFLOPS = 312 * 0.2
DEFAULT_LAUNCH_US = 10.0
#: host-to-device copies from ordinary (pageable) memory over PCIe 4.0, GB/s
DEFAULT_H2D_GBPS = 10.0


class _KernelCounter(TorchDispatchMode):
    """Counts ATen operators that compute (views and metadata changes launch no kernel)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not getattr(func, "is_view", False) and func.__name__.split(".")[0] not in _NO_KERNEL:
            self.count += 1
        return func(*args, **(kwargs or {}))


_NO_KERNEL = {"detach", "alias", "lift_fresh", "_local_scalar_dense", "empty", "empty_like", "new_empty",
              "empty_strided", "set_", "is_same_size", "sym_size", "sym_stride"}


def _count(fn: Callable[[], object]) -> tuple:
    with FlopCounterMode(display=False) as flops, _KernelCounter() as kernels:
        fn()
    return flops.get_total_flops(), kernels.count


@dataclass
class Run:
    """One training run of the full profile."""

    chapter: str
    name: str
    steps: int  # optimisation steps of the run (all seeds/models together)
    batch: int  # the full profile's batch
    train: Callable[[int], object]  # train(k): the library's training for k steps, at COUNT_BATCH
    # the host's part of one full-size batch, if any: timed, and the tensors it returns (what the
    # host hands to the device) counted as bytes copied
    data: Optional[Callable[[], object]] = None
    note: str = ""


def _nbytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 0


def _per_step(run: Run) -> Dict[str, float]:
    torch.manual_seed(0)
    f1, k1 = _count(lambda: run.train(1))
    torch.manual_seed(0)
    f2, k2 = _count(lambda: run.train(2))
    data_s, h2d = 0.0, 0
    if run.data is not None:
        h2d = _nbytes(run.data())
        threads, times = torch.get_num_threads(), []
        torch.set_num_threads(1)
        try:
            for _ in range(5):
                t0 = time.process_time()
                run.data()
                times.append(time.process_time() - t0)
        finally:
            torch.set_num_threads(threads)
        data_s = min(times)
    scale = run.batch / COUNT_BATCH
    return {"flops": max(f2 - f1, 0) * scale, "kernels": max(k2 - k1, 0), "data_s": data_s, "h2d_bytes": h2d}


# ---------------------------------------------------------------------------------------------
# The full profile's runs, chapter by chapter, built from the settings the chapters use
# ---------------------------------------------------------------------------------------------
def _trainer_run(models, step, data_fn, warm_steps: int = 0):
    """A function train(k) that makes k steps of ``step()`` through the engine, with Adam for every
    model of ``models()``, starting at step ``warm_steps`` (past a warm-up)."""
    from animlib.engine import Trainer

    def train(k):
        ms = models()
        t = Trainer(ms, {n: torch.optim.Adam(m.parameters(), 1e-4) for n, m in ms.items()}, step(),
                    device="cpu", progress=False)
        t.step = warm_steps
        t.fit(lambda s: data_fn(), warm_steps + k)
    return train


_ON_DEVICE = "scenes rendered on the GPU (their kernels counted)"
_FACES_ON_DEVICE = "faces rendered on the GPU (their kernels counted); the host draws their parameters"
_WORKERS = "batches from DataLoader workers in pinned memory (off the training thread)"


def _stored(key: str, make: Callable[[], object], _cache: Dict[str, object] = {}) -> object:  # noqa: B006
    """A stand-in for data a chapter keeps on the host (made once, on first use)."""
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def _face_draws(n: int, g: torch.Generator):
    """The host's part of a face-regressor batch (face_regressor.regressor_batches): parameters and blurs."""
    from animlib.data.faces import sample_identity, sample_motion

    return sample_identity(n, g), sample_motion(n, g), torch.rand(n, generator=g)


def runs() -> List[Run]:
    """Every training run of the full profile, in chapter order."""
    g = torch.Generator().manual_seed(0)  # seeds the host's draws that are timed
    out = _nextframe_runs(g) + _cinemagraph_runs()
    style = _style_options()  # shared by chapters 3 and 4 (made here: its random weights draw from torch's seed)
    out += _style_runs(style) + _depth_runs(style, g) + _vae_runs(g) + _video_ae_runs(g) + _reenact_runs(g)
    return out


def _nextframe_runs(g: torch.Generator) -> List[Run]:
    """Chapter 0: the next-frame network."""
    from animlib.engine import SupervisedStep
    from animlib.nextframe import NextFrameConfig, NextFrameNet, NextFrameSettings

    b = COUNT_BATCH
    nf = NextFrameSettings.full()

    def nf_batch(n=b):
        return torch.rand(n, 2, nf.size, nf.size), torch.rand(n, 1, nf.size, nf.size)

    def nf_host():  # chapter 0's batch(step): 64 stored pairs drawn on a seeded generator
        x, y = _stored("nextframe", lambda: (torch.rand(nf.n_train, 2, nf.size, nf.size),
                                             torch.rand(nf.n_train, 1, nf.size, nf.size)))
        idx = torch.randint(0, nf.n_train, (64,), generator=g)
        return x[idx], y[idx]

    return [Run("0", "next-frame network", nf.steps, 64,
                _trainer_run(lambda: {"model": NextFrameNet(NextFrameConfig())},
                             lambda: SupervisedStep(lambda m, x: F.mse_loss(m(x[0]), x[1])), nf_batch),
                data=nf_host, note="pairs gathered on the host")]


def _cinemagraph_runs() -> List[Run]:
    """Chapters 1 and 2: the recurrent generator, the DRQN (five seeds) and chapter 2's generator."""
    from animlib import cinemagraph as C
    from animlib.data.scenes import SceneStream
    from animlib.rl import make_target

    out: List[Run] = []
    b = COUNT_BATCH
    cs = C.CinemagraphSettings.full()
    stream = SceneStream(b, cs.scene, seed=0)
    gen = lambda: {"g": C.CinemagraphGenerator(cs.model),  # noqa: E731
                   "d": C.FrameDiscriminator(cs.model.channels, cs.model.disc_widths)}
    out.append(Run("1", "recurrent generator + discriminator", cs.gen_steps, cs.batch,
                   _trainer_run(gen, lambda: C.GeneratorStep(adv_weight=cs.adv_weight, disc_frames=cs.disc_frames),
                                lambda: stream(0)), note=_ON_DEVICE))
    n_actions = cs.scene.num_classes
    holder = {}

    def drqn_models():
        net = C.CinemagraphDRQN(replace(cs.model, num_actions=n_actions), q_grad_scale=0.2)
        holder["target"] = make_target(net)
        return {"drqn": net}

    out.append(Run("2", f"DRQN ({len(cs.drqn_seeds)} seeds)", cs.drqn_steps * len(cs.drqn_seeds), cs.batch,
                   _trainer_run(drqn_models,
                                # the replayed episodes scale with the batch like everything else (and a
                                # small memory: its size costs no FLOPs)
                                lambda: C.DRQNStep(schedule=replace(cs.drqn, replay_capacity=min(cs.drqn.replay_capacity, 64),
                                                                    replay_batch=max(1, round(cs.drqn.replay_batch * b / cs.batch))),
                                                   target_net=holder["target"], generator=torch.Generator().manual_seed(0)),
                                lambda: stream(0), warm_steps=cs.drqn.warmup),
                   note="counted after the warm-up (with Q-learning); " + _ON_DEVICE))
    sch = cs.drqn
    rec_steps = sch.warmup + (cs.drqn_steps - sch.warmup + sch.teacher_every - 1) // sch.teacher_every
    out.append(Run("2", "recurrent generator (the comparison)", rec_steps, cs.batch,
                   _trainer_run(lambda: {"g": C.CinemagraphGenerator(replace(cs.model, num_actions=0))},
                                lambda: C.GeneratorStep(), lambda: stream(0)), note=_ON_DEVICE))
    return out


def _style_options() -> Dict[str, object]:
    """The keyword arguments of chapters 3 and 4's ``stylize`` calls: a feature extractor with random weights."""
    from animlib.backbones import FeatureExtractor

    layers = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3")
    ext = FeatureExtractor(layers, "random")
    return dict(extractor=ext, progress=False, device="cpu", amp=None)


def _style_runs(common: Dict[str, object]) -> List[Run]:
    """Chapter 3: Gatys (main, texture, optimiser comparison, weight sweep) and the fast network."""
    from animlib import fast_style as FS
    from animlib import style as S

    out: List[Run] = []
    b = COUNT_BATCH
    ext = common["extractor"]
    ss = S.StyleSettings.full()
    h, w = ss.size
    out.append(Run("3", f"Gatys, L-BFGS at {h}x{w}", ss.steps, 1,
                   lambda k: S.stylize(torch.rand(1, 3, h, w), torch.rand(1, 3, h, w), steps=k,
                                       input_pool=ss.input_pool, **common),
                   note="per L-BFGS step, line search included"))
    th, tw = ss.tex_size
    out.append(Run("3", "texture synthesis (two textures)", ss.tex_steps, 2,
                   lambda k: S.synthesize_texture(torch.rand(2, 3, th, tw), ss.tex_size, steps=k,
                                                  input_pool=ss.input_pool, **common)))
    hh, hw = ss.small_size
    out.append(Run("3", "optimiser comparison (L-BFGS, then Adam)", 2 * ss.cmp_steps, 1,
                   lambda k: S.stylize(torch.rand(1, 3, hh, hw), torch.rand(1, 3, hh, hw), steps=k,
                                       input_pool=ss.input_pool, **common),
                   note="Adam gets as many steps as L-BFGS made evaluations; counted as L-BFGS steps"))
    out.append(Run("3", "content/style weight sweep (4 images)", ss.grid_steps, 4,
                   lambda k: S.stylize(torch.rand(b, 3, hh, hw), torch.rand(1, 3, hh, hw), steps=k, optimizer="adam",
                                       input_pool=ss.input_pool, **common)))
    fs = FS.FastStyleSettings.full()
    out.append(Run("3", f"fast style network, {fs.crop}px crops", fs.steps, fs.batch,
                   lambda k: FS.train_fast_style(torch.rand(1, 3, fs.crop, fs.crop), torch.rand(4, 3, fs.crop, fs.crop),
                                                 ext, steps=k, config=fs.transformer, batch_size=b,
                                                 image_size=fs.crop, device="cpu", progress=False),
                   note="crops cut on the GPU from photos kept there (their kernels counted); a folder of photos: "
                        + _WORKERS))
    return out


def _depth_runs(common: Dict[str, object], g: torch.Generator) -> List[Run]:
    """Chapter 4: the hourglass (pre-training, fine-tuning, the judge) and depth-aware style transfer."""
    from animlib import depth as D
    from animlib import style as S

    out: List[Run] = []
    b = COUNT_BATCH
    ds = D.DepthSettings.full()
    dh, dw = ds.size if isinstance(ds.size, tuple) else (ds.size, ds.size)

    def depth_batch():
        return {"image": torch.rand(b, 3, dh, dw), "depth": torch.rand(b, 1, dh, dw) + 0.5,
                "valid": torch.ones(b, 1, dh, dw, dtype=torch.bool)}

    def depth_host():  # chapter 4's batches(): stored scenes drawn on a seeded generator (flipped on the GPU)
        store = _stored("depth", lambda: {"image": torch.rand(64, 3, dh, dw), "depth": torch.rand(64, 1, dh, dw),
                                          "valid": torch.ones(64, 1, dh, dw, dtype=torch.bool)})
        idx = torch.randint(64, (ds.batch,), generator=g)
        flip = torch.rand(ds.batch, generator=g) < 0.5
        return {k: v[idx] for k, v in store.items()}, flip

    out.append(Run("4", "hourglass: pre-training, fine-tuning, judge", ds.pre_steps + ds.ft_steps + ds.judge_steps,
                   ds.batch, _trainer_run(lambda: {"model": D.Hourglass(D.HourglassConfig(width=ds.width))},
                                          lambda: D.RelativeDepthStep(n_pairs=1024), depth_batch),
                   data=depth_host, note="scenes gathered on the host, flipped on the GPU"))
    sh, sw = ds.style_size if isinstance(ds.style_size, tuple) else (ds.style_size, ds.style_size)
    out.append(Run("4", "depth-aware style transfer (ramp + 5 variants)", 6 * ds.style_steps, 1,
                   lambda k: S.stylize(torch.rand(1, 3, sh, sw), torch.rand(1, 3, sh, sw), steps=k, optimizer="adam",
                                       **common), note="the depth term's hourglass pass not counted"))
    return out


def _vae_runs(g: torch.Generator) -> List[Run]:
    """Chapters 5 and 6: the autoencoder, the VAE, the VAE-GAN with its discriminator and the regressors
    that score the videos (chapter 6's VAE is counted on chapter 5's faces)."""
    from animlib import vae as V
    from animlib import vaegan as VG
    from animlib.face_regressor import train_face_regressor

    out: List[Run] = []
    b = COUNT_BATCH
    # chapter 5: the autoencoder, the VAE and the regressor that scores the videos
    vs = V.VAESettings.full()
    vae_steps = vs.train_steps(vs.n_train // vs.batch)
    vcfg = V.ConvVAEConfig(image_size=vs.size, latent_dim=vs.latent, width=vs.width, dec_width=vs.width)
    faces = lambda: torch.rand(b, 3, vs.size, vs.size)  # noqa: E731
    out.append(Run("5", "VAE and its autoencoder baseline", vae_steps + vs.ae_steps, vs.batch,
                   lambda k: V.train_vae(V.ConvVAE(vcfg), lambda s: faces(), k, device="cpu", progress=False),
                   note=_WORKERS))
    out.append(Run("5", "face-parameter regressor", vs.reg_steps, 64,
                   lambda k: train_face_regressor(vs.size, steps=k, batch_size=b, device="cpu", progress=False),
                   data=lambda: _face_draws(64, g), note=_FACES_ON_DEVICE))

    # chapter 6: the VAE and the VAE-GAN with its discriminator
    gs = VG.VAEGANSettings.full()
    gan_steps = gs.train_steps(gs.n_train // gs.batch)
    gcfg = V.ConvVAEConfig(image_size=gs.size, latent_dim=gs.latent, width=gs.width, dec_width=gs.width)
    out.append(Run("6", "VAE (the comparison)", gan_steps, gs.batch,
                   lambda k: V.train_vae(V.ConvVAE(gcfg), lambda s: faces(), k, device="cpu", progress=False),
                   note=_WORKERS))
    out.append(Run("6", "VAE-GAN", gan_steps, gs.batch,
                   _trainer_run(lambda: {"vae": V.ConvVAE(gcfg),
                                         "d": VG.VAEGANDiscriminator(VG.VAEGANDiscriminatorConfig(image_size=gs.size))},
                                lambda: VG.VAEGANStep(VG.VAEGANWeights(kl=gs.beta, adv=gs.adv)),
                                lambda: torch.rand(b, 3, gs.size, gs.size)), note=_WORKERS))
    out.append(Run("6", "face-parameter regressor (real-face videos)", gs.reg_steps, 64,
                   lambda k: train_face_regressor(gs.size, steps=k, batch_size=b, device="cpu", progress=False),
                   data=lambda: _face_draws(64, g), note=_FACES_ON_DEVICE))
    return out


def _video_ae_runs(g: torch.Generator) -> List[Run]:
    """Chapter 7: the shared frame codec, then the three autoencoders and the action classifier."""
    from animlib import video_ae as VA
    from animlib.action_classifier import labelled_clip_batches

    out: List[Run] = []
    b = COUNT_BATCH
    vas = VA.VideoAESettings.full()
    m = vas.model

    def clips():
        return torch.rand(b, m.frames, m.channels, m.image_size, m.image_size)

    def ae_run(kind):
        return lambda k: VA.train_autoencoder(VA.build_autoencoder(kind, m), lambda s: clips(), k, device="cpu",
                                              progress=False)

    def train_clips():  # chapter 7 keeps its training clips on the host (a stand-in of 64)
        return _stored("clips", lambda: torch.rand(64, vas.train_frames, m.channels, m.image_size, m.image_size))

    def clip_host(batch, frames):
        return lambda: VA.clip_batches(train_clips(), batch, frames)(0)

    on_host = "clips gathered on the host"
    out.append(Run("7", "frame codec pre-training", vas.pretrain_steps, vas.pretrain_batch, ae_run("per_frame"),
                   data=clip_host(vas.pretrain_batch, vas.pretrain_frames), note=on_host))
    for kind in ("gru", "per_frame", "clip_latent"):
        out.append(Run("7", f"{kind} autoencoder", vas.steps, vas.batch, ae_run(kind),
                       data=clip_host(vas.batch, m.frames), note=on_host))

    def judge_run(k):
        from animlib.action_classifier import train_action_classifier

        return train_action_classifier(clips(), torch.arange(b) % 10, k, n_classes=10, batch_size=b,
                                       width=vas.classifier_width, device="cpu", progress=False)

    out.append(Run("7", "action classifier (judges the reconstructions)", vas.classifier_steps, vas.classifier_batch,
                   judge_run, data=lambda: labelled_clip_batches(train_clips(), torch.arange(64) % 10,
                                                                 vas.classifier_batch, m.frames)(0), note=on_host))
    return out


def _reenact_runs(g: torch.Generator) -> List[Run]:
    """Chapter 8: meta-learning (landmark driver, driver-image ablation), the warp, the VAE, the regressor,
    few-shot fine-tuning."""
    from animlib import reenact as RE
    from animlib import vae as V
    from animlib.backbones import FeatureExtractor
    from animlib.face_regressor import train_face_regressor

    b = COUNT_BATCH
    rs = RE.ReenactSettings.full()
    # the full profile's face pool is rendered once and kept as bytes if it fits, else rendered episode
    # by episode on the GPU (animlib.reenact.FacePool); a tiny pool of the same kind gives the steps'
    # shapes and kernels
    full_cached = rs.n_ids * rs.n_poses * (3 + RE.N_PARTS) * rs.size ** 2 <= RE.POOL_CACHE_BYTES
    pool8 = RE.FacePool(4, max(rs.k_train + 1, 2), rs.size, seed=0, cache=full_cached)
    n8 = pool8.n_ids * pool8.n_poses
    shots8 = RE.FacePool(1, 2, rs.size, seed=0)  # few-shot frames (rendered before that stage)
    vgg8 = FeatureExtractor(("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3"), weights="random")
    episodes, vae_frames = _reenact_host_data(pool8, rs.batch, full_cached, g)

    def meta(driver):
        return lambda k: RE.meta_train(pool8, k, config=rs.config(driver), batch_size=b, k=rs.k_train, device="cpu",
                                       progress=False, step=RE.ReenactStep(vgg=vgg8, vgg_weight=rs.vgg_weight))

    def few(k):
        cfg8 = rs.config()
        e8, g8, d8 = RE.Embedder(cfg8), RE.FaceGenerator(cfg8), RE.ProjectionDiscriminator(cfg8, 1)
        shots = shots8.images[0, :1].float() / 255
        RE.finetune(e8, g8, d8, shots, shots8.lm_images[0, :1].float() / 255, k, batch_size=b, device="cpu",
                    step=RE.ReenactStep(vgg=vgg8, vgg_weight=rs.vgg_weight))

    pooled = ("frames gathered on the host as bytes, made float on the GPU" if full_cached else
              "frames rendered on the GPU (their kernels counted); the host draws them")
    rvcfg = V.ConvVAEConfig(image_size=rs.size, latent_dim=rs.vae_latent, width=rs.width * 2, dec_width=rs.width * 2)
    return [
        Run("8", "meta-learning (landmark driver)", rs.steps, rs.batch, meta("landmarks"),
            data=episodes(rs.k_train), note=pooled),
        Run("8", "meta-learning (driver-image ablation)", rs.image_steps, rs.batch, meta("image"),
            data=episodes(rs.k_train), note=pooled),
        Run("8", "warping baseline", rs.warp_steps, rs.batch,
            lambda k: RE.train_warp(pool8, k, config=rs.config(), batch_size=b, device="cpu", progress=False),
            data=episodes(1), note=pooled),
        Run("8", "latent-difference VAE", rs.vae_steps, 64,
            lambda k: V.train_vae(V.ConvVAE(rvcfg), lambda s: pool8.frames(torch.randint(0, n8, (b,))).float()
                                  / 255, k, device="cpu", progress=False),
            data=vae_frames, note=pooled),
        Run("8", "face-parameter regressor", rs.reg_steps, 64,
            lambda k: train_face_regressor(rs.size, steps=k, batch_size=b, device="cpu", progress=False),
            data=lambda: _face_draws(64, g), note=_FACES_ON_DEVICE),
        Run("8", "few-shot fine-tuning (K = 1 and 8)", 2 * rs.n_fewshot * rs.finetune_steps, 8, few),
    ]


def _reenact_host_data(pool8, batch: int, full_cached: bool, g: torch.Generator) -> tuple:
    """The host's part of chapter 8's batches in the full profile: ``episodes(k)`` (FacePool.batch) makes
    the data function of a run on episodes of ``k`` shots, ``vae_frames`` that of the VAE (pool.frames)."""
    n8 = pool8.n_ids * pool8.n_poses

    def episodes(k):  # the host's part of FacePool.batch in the full profile
        if full_cached:
            return lambda: pool8.gather(batch, k, g)

        def draws():  # rendered on the GPU: the host draws the episodes and looks up their parameters
            idx = torch.randint(0, pool8.n_ids, (batch,), generator=g)
            order = torch.rand(batch, pool8.n_poses, generator=g).argsort(1)[:, : k + 1]
            rows = idx[:, None].expand_as(order)
            return pool8.identity[rows], pool8.motion[rows, order], pool8.landmarks[rows, order]
        return draws

    def vae_frames():  # the host's part of chapter 8's VAE batch (pool.frames)
        idx = torch.randint(0, n8, (64,), generator=g)
        if full_cached:
            return pool8.frames(idx)
        return pool8.identity[idx // pool8.n_poses], pool8.motion.flatten(0, 1)[idx]

    return episodes, vae_frames


def settings_fingerprint() -> Dict[str, str]:
    """The full profile's settings of every method, as text: a stale estimate shows as a change here."""
    from animlib import cinemagraph, depth, fast_style, nextframe, reenact, style, vae, vaegan, video_ae

    classes = [nextframe.NextFrameSettings, cinemagraph.CinemagraphSettings, style.StyleSettings,
               fast_style.FastStyleSettings, depth.DepthSettings, vae.VAESettings, vaegan.VAEGANSettings,
               video_ae.VideoAESettings, reenact.ReenactSettings]
    return {c.__name__: repr(dataclasses.asdict(c.full())) for c in classes}


def estimate(tflops: float = DEFAULT_TFLOPS, launch_us: float = DEFAULT_LAUNCH_US,
             only: Optional[List[str]] = None, h2d_gbps: float = DEFAULT_H2D_GBPS) -> Dict[str, object]:
    """Count every full-profile run (``only``: chapter numbers to keep) and estimate its GPU time."""
    torch.set_grad_enabled(True)
    rows = []
    for run in runs():
        if only and run.chapter not in only:
            continue
        t0 = time.perf_counter()
        c = _per_step(run)
        compute_s = c["flops"] / (tflops * 1e12)
        launch_s = c["kernels"] * launch_us * 1e-6
        host_s = c["data_s"] + c["h2d_bytes"] / (h2d_gbps * 1e9)
        step_s = max(compute_s, launch_s) + host_s
        rows.append({"chapter": run.chapter, "run": run.name, "steps": run.steps, "batch": run.batch,
                     "gflop_per_step": c["flops"] / 1e9, "kernels_per_step": c["kernels"],
                     "host_data_s_per_step": host_s, "host_work_s_per_step": c["data_s"],
                     "to_device_mb_per_step": c["h2d_bytes"] / 1e6,
                     "bound": "compute" if compute_s >= launch_s else "launch",
                     "gpu_s_per_step": step_s, "gpu_minutes": run.steps * step_s / 60,
                     "total_pflop": run.steps * c["flops"] / 1e15, "note": run.note,
                     "counted_in_s": time.perf_counter() - t0})
    per_chapter: Dict[str, float] = {}
    for r in rows:
        per_chapter[r["chapter"]] = per_chapter.get(r["chapter"], 0.0) + r["gpu_minutes"]
    return {"assumed": {"tflops": tflops, "launch_us": launch_us, "h2d_gbps": h2d_gbps, "count_batch": COUNT_BATCH,
                        "gpu": f"{tflops:g} TFLOP/s achieved (e.g. an A100 in bf16 at 20 % of its 312 TFLOP/s peak)"},
            "rows": rows, "chapter_minutes": per_chapter, "total_hours": sum(per_chapter.values()) / 60,
            "settings": settings_fingerprint()}


def markdown(result: Dict[str, object]) -> str:
    """The estimate as a Markdown table (what the setup page includes)."""
    a = result["assumed"]
    lines = ["| chapter | training run | steps | batch | GFLOP/step | kernels/step | bound | to GPU (MB/step) "
             "| host data (s/step) | minutes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['chapter']} | {r['run']} | {r['steps']:,} | {r['batch']} | {r['gflop_per_step']:.1f} | "
                     f"{r['kernels_per_step']:,} | {r['bound']} | {r['to_device_mb_per_step']:.1f} | "
                     f"{r['host_data_s_per_step']:.4f} | {r['gpu_minutes']:.1f} |")
    chapters = ", ".join(f"chapter {c}: {m:.0f} min" for c, m in result["chapter_minutes"].items())
    lines += ["", f"Per chapter: {chapters}. **Total: about {result['total_hours']:.1f} hours** of training on one "
                  f"GPU at {a['gpu']}, {a['launch_us']:g} µs per kernel launch and {a['h2d_gbps']:g} GB/s from host "
                  f"to GPU, plus evaluation and figures. Host data: what the host does for each step (timed on "
                  f"this CPU) and its copy to the GPU."]
    return "\n".join(lines) + "\n"
