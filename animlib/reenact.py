"""Controllable face animation: an embedder, a generator and a discriminator as a learned loss.

Source: Druki & Maslov, "Development of a generative neural network algorithm for controllable
face frames" (TPU, 2021), which builds on X2Face (Wiles et al. 2018) and few-shot adversarial
talking heads (Zakharov et al. 2019). Three networks:

1. an **embedder** ``E(x, y)`` maps source frames ``x`` (with their landmark images ``y``) to a
   pose-invariant identity vector; the vectors of K frames are averaged:
   ``ê = (1/K) Σ_k E(x_k, y_k)`` (Zakharov's eq. 1);
2. a **generator** ``G(y_t, ê)`` draws the driver's pose ``y_t`` with the source's appearance; the
   identity enters through adaptive instance normalisation, ``AdaIN(h, γ, β) = γ ⊙ (h − μ(h)) /
   σ(h) + β`` per channel, with ``(γ, β) = ψ = P ê`` projected from the embedding;
3. a **projection discriminator** ``D(x, y, i)`` scores realism of a frame for its landmarks and
   identity, ``r = vᵀ (W_i + w_0) + b`` with ``v`` pooled from D's trunk and ``W_i`` one learned
   column per training identity. It is the source's "learned loss": the hinge adversarial term,
   feature matching on D's layers, and ``L_MCH = ‖W_i − ê_i‖₁`` tie the embedding to identity.

Also here: :func:`relative_landmarks` (the First Order Motion Model's relative motion transfer),
the driver-*image* generator of the source's literal reading (:class:`ReenactConfig` with
``driver="image"``: the driving frame passes through a bottleneck, as in X2Face), an X2Face-style
warping baseline (:class:`WarpGenerator`), meta-learning (:func:`meta_train`) and few-shot
fine-tuning (:func:`finetune`), and :class:`ReenactSettings`. The data are synthetic faces with
exact landmarks (:mod:`animlib.data.faces`, :mod:`animlib.data.landmarks`); adversarial losses come
from :mod:`animlib.gan`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .data.faces import as_generator, face_landmarks, render_faces, sample_identity, sample_motion
from .data.images import to_float, to_uint8
from .data.landmarks import PARTS, interocular_distance, rasterize_landmarks
from .engine import Trainer
from .gan import check_image_channels, get_gan_loss, spectral_norm_all
from .runtime import ProfileSettings

__all__ = [
    "adain",
    "ReenactConfig",
    "Embedder",
    "FaceGenerator",
    "ProjectionDiscriminator",
    "WarpGenerator",
    "multiscale_content_loss",
    "feature_matching_loss",
    "match_loss",
    "relative_landmarks",
    "neutral_motion",
    "FacePool",
    "FinetuneStep",
    "HeldTensor",
    "ReenactStep",
    "WarpStep",
    "meta_train",
    "train_warp",
    "finetune",
    "animate",
    "landmark_warp",
    "ReenactSettings",
]

N_PARTS = len(PARTS)
#: A :class:`FacePool` up to this size is rendered once and kept as bytes; a larger one renders each
#: episode when drawn (on the training device).
POOL_CACHE_BYTES = 2 * 2**30


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def adain(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: ``γ ⊙ (h − μ) / σ + β`` per sample and channel.

    ``h`` (B, C, H, W); ``gamma``, ``beta`` (B, C). ``μ`` and ``σ²`` are the mean and (biased)
    variance over each feature map's pixels, as in :class:`torch.nn.InstanceNorm2d`.
    """
    if h.ndim != 4 or gamma.shape != h.shape[:2] or beta.shape != h.shape[:2]:
        raise ValueError(f"adain needs h (B, C, H, W) and gamma, beta (B, C); got {tuple(h.shape)}, "
                         f"{tuple(gamma.shape)}, {tuple(beta.shape)}")
    mu = h.mean((2, 3), keepdim=True)
    var = h.var((2, 3), keepdim=True, unbiased=False)
    return gamma[:, :, None, None] * (h - mu) / torch.sqrt(var + eps) + beta[:, :, None, None]


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 4, 2, 1)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


@dataclass
class ReenactConfig:
    """Sizes of the three networks (and of the warping baseline)."""

    image_size: int = 32  # frames are (3, image_size, image_size); a multiple of 2**levels
    width: int = 16  # channels of the first conv; doubled at each down level
    levels: int = 2  # stride-2 down (and up) levels of the generator
    n_res: int = 2  # AdaIN residual blocks at the bottleneck resolution
    embed_dim: int = 64  # length of the identity vector ê
    driver: str = "landmarks"  # "landmarks" (Zakharov) or "image" (the source: a driving frame via a bottleneck)
    bottleneck: int = 32  # driver="image": length of the driving vector (X2Face's bottleneck)

    def __post_init__(self) -> None:
        if self.driver not in ("landmarks", "image"):
            raise ValueError(f"driver must be 'landmarks' or 'image', got {self.driver!r}")
        if self.image_size % (2 ** (self.levels + 1)) != 0:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {2 ** (self.levels + 1)} "
                             f"for {self.levels} levels")


# ----------------------------------------------------------------------------------------------
# the three networks
# ----------------------------------------------------------------------------------------------
class Embedder(nn.Module):
    """``E(x, y)``: frames (B, K, 3, H, W) and their landmark images (B, K, P, H, W) -> ê (B, embed_dim).

    Strided convs over the frame concatenated with its landmarks, a global max pool and a ReLU
    (Zakharov's embedder head); the K per-frame vectors are averaged, so ê does not depend on the
    order of the frames (:meth:`per_frame` gives them one by one).
    """

    def __init__(self, config: ReenactConfig | None = None):
        super().__init__()
        self.config = c = config or ReenactConfig()
        w, blocks, cin = c.width, [], 3 + N_PARTS
        for i in range(c.levels + 1):
            blocks.append(_down(cin, w * 2**i, norm=i > 0))
            cin = w * 2**i
        self.trunk = nn.Sequential(*blocks, nn.Conv2d(cin, c.embed_dim, 3, 1, 1))

    def per_frame(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One vector per frame: (B, K, embed_dim)."""
        if x.ndim != 5 or y.ndim != 5 or x.shape[:2] != y.shape[:2] or x.shape[2] != 3 or y.shape[2] != N_PARTS:
            raise ValueError(f"Embedder needs frames (B, K, 3, H, W) and landmark images (B, K, {N_PARTS}, H, W); "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
        B, K = x.shape[:2]
        h = self.trunk(torch.cat([x, y], 2).flatten(0, 1) * 2 - 1)  # (B*K, E, h, w)
        return F.relu(h.amax((2, 3))).view(B, K, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_frame(x, y).mean(1)  # (B, E): ê, eq. (1)


class _AdaINRes(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, h, p1, p2):
        r = self.c1(F.leaky_relu(adain(h, *p1), 0.2))
        r = self.c2(F.leaky_relu(adain(r, *p2), 0.2))
        return h + r


class FaceGenerator(nn.Module):
    """``G(driver, ê)``: a driver (landmark image (B, P, H, W), or a frame (B, 3, H, W) when
    ``config.driver == "image"``) and an identity vector -> a frame (B, 3, H, W) in [0, 1].

    Down blocks with instance norm, AdaIN residual blocks, up blocks with AdaIN, a sigmoid output.
    All AdaIN parameters come from ``ψ = P ê`` (:meth:`adain_params`, with ``γ = 1 + ψ_γ`` so that
    a zero projection starts as plain instance norm). Pass ``psi=`` instead of ``ê`` to drive it
    with free AdaIN parameters, as few-shot fine-tuning does. With ``driver="image"`` the driving
    frame is squeezed through a ``bottleneck``-long vector (X2Face's driving vector), the only
    channel for pose.
    """

    def __init__(self, config: ReenactConfig | None = None):
        super().__init__()
        self.config = c = config or ReenactConfig()
        w, L = c.width, c.levels
        cin = N_PARTS if c.driver == "landmarks" else 3
        self.stem = nn.Sequential(nn.Conv2d(cin, w, 3, 1, 1), nn.LeakyReLU(0.2))
        self.down = nn.Sequential(*[_down(w * 2**i, w * 2 ** (i + 1)) for i in range(L)])
        top, s = w * 2**L, c.image_size // 2**L
        if c.driver == "image":  # X2Face: pose only through a short vector
            self.squeeze = nn.Sequential(nn.Flatten(), nn.Linear(top * s * s, c.bottleneck), nn.LeakyReLU(0.2),
                                         nn.Linear(c.bottleneck, top * s * s))
        self.res = nn.ModuleList(_AdaINRes(top) for _ in range(c.n_res))
        # up-sampling by transposed 4×4 convs of stride 2 (half the cost of resize + 3×3 conv)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w * 2 ** (i + 1), w * 2**i, 4, 2, 1) for i in reversed(range(L)))
        self.out = nn.Conv2d(w, 3, 3, 1, 1)
        # the AdaIN layers' channels, in the order forward() uses them
        self.adain_channels: List[int] = [top] * (2 * c.n_res) + [w * 2 ** (i + 1) for i in reversed(range(L))]
        self.project = nn.Linear(c.embed_dim, 2 * sum(self.adain_channels))  # P
        nn.init.normal_(self.project.weight, std=0.02)
        nn.init.zeros_(self.project.bias)

    def adain_params(self, e: torch.Tensor) -> torch.Tensor:
        """ψ = P ê: (B, embed_dim) -> (B, 2 Σ C_l)."""
        return self.project(e)

    def _split(self, psi: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        out, i = [], 0
        for ch in self.adain_channels:
            out.append((1 + psi[:, i : i + ch], psi[:, i + ch : i + 2 * ch]))
            i += 2 * ch
        return out

    def forward(self, driver: torch.Tensor, e: torch.Tensor | None = None, psi: torch.Tensor | None = None):
        c = self.config
        cin = N_PARTS if c.driver == "landmarks" else 3
        if driver.ndim != 4 or driver.shape[1] != cin or driver.shape[-1] != c.image_size:
            kind = "landmark images" if c.driver == "landmarks" else "driving frames"
            raise ValueError(f"FaceGenerator(driver={c.driver!r}) needs {kind} (B, {cin}, {c.image_size}, {c.image_size}); "
                             f"got {tuple(driver.shape)}")
        if (e is None) == (psi is None):
            raise ValueError("give the identity as exactly one of e= (the embedding) or psi= (AdaIN parameters)")
        if psi is None:
            psi = self.adain_params(e)
        if psi.shape[0] == 1 and driver.shape[0] > 1:
            psi = psi.expand(driver.shape[0], -1)
        params = self._split(psi)
        h = self.down(self.stem(driver * 2 - 1 if c.driver == "image" else driver))  # (B, top, s, s)
        if c.driver == "image":
            h = self.squeeze(h).view_as(h)
        k = 0
        for block in self.res:
            h = block(h, params[k], params[k + 1])
            k += 2
        for conv in self.up:
            h = conv(F.leaky_relu(adain(h, *params[k]), 0.2))
            k += 1
        return torch.sigmoid(self.out(F.leaky_relu(h, 0.2)))


class ProjectionDiscriminator(nn.Module):
    """``D(x, y, i)``: realism of frames (B, 3, H, W) with landmark images (B, P, H, W) for identities.

    Returns ``(r (B,), features)``: ``r = vᵀ (W_i + w_0) + b``, ``v`` the sum-pooled trunk output
    and ``features`` the trunk's intermediate maps (for feature matching). The identity is either
    indices ``i`` into the learned table ``W`` (``n_identities`` rows, training identities) or an
    explicit vector ``w=`` (B or 1, embed_dim) replacing ``W_i`` (few-shot fine-tuning starts it at ê).
    Spectral norm on every conv and linear layer.
    """

    def __init__(self, config: ReenactConfig | None = None, n_identities: int = 1):
        super().__init__()
        self.config = c = config or ReenactConfig()
        w, blocks, cin = c.width, [], 3 + N_PARTS
        for i in range(c.levels + 1):
            blocks.append(nn.Sequential(nn.Conv2d(cin, w * 2**i, 4, 2, 1), nn.LeakyReLU(0.2)))
            cin = w * 2**i
        blocks.append(nn.Sequential(nn.Conv2d(cin, c.embed_dim, 3, 1, 1), nn.LeakyReLU(0.2)))
        self.blocks = spectral_norm_all(nn.ModuleList(blocks))
        self.W = nn.Embedding(n_identities, c.embed_dim)  # one column per training identity
        # random, distinct columns (as in the public re-implementations): at zero, L_MCH would pull
        # every embedding to 0 early on and erase identity until the other losses pull it back.
        # Uniform in [0, 1], because ê is non-negative (a ReLU ends the embedder).
        nn.init.uniform_(self.W.weight, 0.0, 1.0)
        self.w0 = nn.Parameter(torch.zeros(c.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))
        self.plain = spectral_norm_all(nn.Linear(c.embed_dim, 1))  # the unconditional part of vᵀw_0

    def forward(self, x: torch.Tensor, y: torch.Tensor, i: torch.Tensor | None = None,
                w: torch.Tensor | None = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if (i is None) == (w is None):
            raise ValueError("give the identity as exactly one of i= (training indices) or w= (a vector)")
        check_image_channels(x, 3, "ProjectionDiscriminator", None)
        h, feats = torch.cat([x * 2 - 1, y], 1), []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        v = h.sum((2, 3))  # (B, E)
        wi = self.W(i) if w is None else w.expand(v.shape[0], -1)
        r = (v * (wi + self.w0)).sum(1) + self.plain(v).squeeze(1) + self.b
        return r, feats[:-1]


class WarpGenerator(nn.Module):
    """X2Face-style baseline: warp the source frame with a sampling grid predicted from the driver.

    Input: the source frame, its landmark image and the driver's landmark image; an encoder-decoder
    predicts a 2-channel offset (tanh, in image units) added to the identity grid, and
    :func:`torch.nn.functional.grid_sample` samples the source there. Appearance can only come
    from the source's pixels: it keeps colours but cannot draw what the source does not show.
    """

    def __init__(self, config: ReenactConfig | None = None, max_offset: float = 0.5):
        super().__init__()
        self.config = c = config or ReenactConfig()
        w, L = c.width, c.levels
        self.max_offset = max_offset
        self.enc = nn.Sequential(nn.Conv2d(3 + 2 * N_PARTS, w, 3, 1, 1), nn.LeakyReLU(0.2),
                                 *[_down(w * 2**i, w * 2 ** (i + 1)) for i in range(L)])
        self.dec = nn.ModuleList(nn.ConvTranspose2d(w * 2 ** (i + 1), w * 2**i, 4, 2, 1) for i in reversed(range(L)))
        self.flow = nn.Conv2d(w, 2, 3, 1, 1)
        nn.init.zeros_(self.flow.weight)
        nn.init.zeros_(self.flow.bias)

    def forward(self, source: torch.Tensor, source_lm: torch.Tensor, driver_lm: torch.Tensor) -> torch.Tensor:
        h = self.enc(torch.cat([source * 2 - 1, source_lm, driver_lm], 1))
        for conv in self.dec:
            h = F.leaky_relu(conv(h), 0.2)
        offset = self.max_offset * torch.tanh(self.flow(h)).permute(0, 2, 3, 1)  # (B, H, W, 2)
        B, _, H, W = source.shape
        theta = torch.eye(2, 3, device=source.device, dtype=source.dtype).expand(B, 2, 3)
        grid = F.affine_grid(theta, (B, 3, H, W), align_corners=False) + offset
        return F.grid_sample(source, grid, padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------
def multiscale_content_loss(fake: torch.Tensor, real: torch.Tensor, levels: int = 3, vgg: nn.Module | None = None,
                 vgg_weight: float = 0.0) -> torch.Tensor:
    """L_CNT: L1 on pixels at ``levels`` scales (each halving by average pooling), plus ``vgg_weight``
    times the L1 between VGG features (:class:`animlib.backbones.FeatureExtractor`) when ``vgg`` is given.
    """
    loss, a, b = fake.new_zeros(()), fake, real
    for lvl in range(levels):
        loss = loss + F.l1_loss(a, b)
        if lvl + 1 < levels:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    if vgg is not None and vgg_weight > 0:
        fa, fb = vgg(fake), vgg(real)
        loss = loss + vgg_weight * sum(F.l1_loss(fa[k], fb[k].detach()) for k in fa) / len(fa)
    return loss


def feature_matching_loss(fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between D's intermediate maps on fake and (detached) real frames, averaged over layers."""
    if len(fake_feats) != len(real_feats) or not fake_feats:
        raise ValueError("feature matching needs the same, non-empty list of layers for fake and real")
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def match_loss(w_i: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """L_MCH = ‖W_i − ê_i‖₁ (mean over entries): ties D's identity column to the embedder's vector."""
    return F.l1_loss(e, w_i)


# ----------------------------------------------------------------------------------------------
# relative motion transfer
# ----------------------------------------------------------------------------------------------
def relative_landmarks(source: torch.Tensor, driving: torch.Tensor, driving_initial: torch.Tensor,
                       adapt_scale: bool = True) -> torch.Tensor:
    """First Order Motion Model's relative transfer: ``kp_source + s · (kp_driving − kp_driving_initial)``.

    ``source`` (B, 68, 2) the source's landmarks, ``driving`` (B, T, 68, 2) the driving clip's,
    ``driving_initial`` (B, 68, 2) a driver frame in the source's pose. Only the driver's *motion*
    moves the source's landmarks, so the driver's face shape (jaw width, eye spacing) does not
    leak. ``adapt_scale`` scales the motion by the ratio of inter-ocular distances (FOMM scales by
    the square root of the faces' area ratio; eye distance is the landmark version).
    """
    if driving.ndim == 3:
        driving = driving.unsqueeze(1)
    if source.ndim != 3 or driving_initial.shape != source.shape or driving.shape[0] != source.shape[0]:
        raise ValueError(f"need source (B, 68, 2), driving (B, T, 68, 2) and driving_initial (B, 68, 2); got "
                         f"{tuple(source.shape)}, {tuple(driving.shape)}, {tuple(driving_initial.shape)}")
    s = (interocular_distance(source) / interocular_distance(driving_initial)).view(-1, 1, 1, 1) if adapt_scale else 1.0
    return source.unsqueeze(1) + s * (driving - driving_initial.unsqueeze(1))


def neutral_motion(n: int) -> torch.Tensor:
    """``n`` copies of the neutral pose: facing the camera, mouth slightly open, eyes open, no smile."""
    return torch.tensor([[0.0, 0.0, 0.15, 0.0, 0.0]]).expand(n, 5).clone()


# ----------------------------------------------------------------------------------------------
# data: a pool of identities, each seen in several poses, rendered once
# ----------------------------------------------------------------------------------------------
class FacePool:
    """``n_ids`` synthetic identities × ``n_poses`` random poses, with landmarks.

    ``identity`` (n_ids, 8), ``motion`` (n_ids, n_poses, 5) and ``landmarks`` (n_ids, n_poses, 68, 2)
    are the exact ground truth. A pool that fits in :data:`POOL_CACHE_BYTES` (the quick profile's
    does) is rendered once and kept as bytes (4× less memory than floats): ``images`` (n_ids,
    n_poses, 3, S, S) and ``lm_images`` (n_ids, n_poses, P, S, S). A larger one (the full profile's
    20 000 identities at 128 px would take 26 GB) keeps only the ground truth and renders each
    episode's frames when they are drawn, on ``device``, where a GPU renders a batch in
    milliseconds; ``images`` and ``lm_images`` are then None. Both give the same pixels.
    :meth:`batch` draws Zakharov's episodes: K source frames and one more target frame of the same
    identity; :meth:`frames` single frames.
    """

    def __init__(self, n_ids: int, n_poses: int, size: int, seed: int = 0, device=None,
                 cache: Optional[bool] = None):
        if n_ids < 1 or n_poses < 2:
            raise ValueError(f"need n_ids >= 1 identities with n_poses >= 2 poses each; got {n_ids}, {n_poses}")
        g = as_generator(seed)
        self.size, self.n_ids, self.n_poses = size, n_ids, n_poses
        self.identity = sample_identity(n_ids, g)
        self.motion = sample_motion(n_ids * n_poses, g).view(n_ids, n_poses, 5)
        ident = self.identity.repeat_interleave(n_poses, 0)
        mot = self.motion.reshape(-1, 5)
        self.render_device = dev = torch.device(device) if device is not None else torch.device("cpu")
        self.nbytes = n_ids * n_poses * (3 + N_PARTS) * size * size  # rendered and kept as bytes
        self.cached = self.nbytes <= POOL_CACHE_BYTES if cache is None else bool(cache)
        imgs, lms, pts = [], [], []
        for a in range(0, ident.shape[0], 2048):
            i, m = ident[a : a + 2048].to(dev), mot[a : a + 2048].to(dev)
            p = face_landmarks(i, m)
            if self.cached:
                imgs.append(to_uint8(render_faces(i, m, size)).cpu())
                lms.append(to_uint8(rasterize_landmarks(p, size)).cpu())
            pts.append(p.cpu())
        self.landmarks = torch.cat(pts).view(n_ids, n_poses, 68, 2)
        self.images = torch.cat(imgs).view(n_ids, n_poses, 3, size, size) if self.cached else None
        self.lm_images = torch.cat(lms).view(n_ids, n_poses, N_PARTS, size, size) if self.cached else None

    def _render(self, ids: torch.Tensor, poses: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frames and landmark images (bytes, on the render device) of identities ``ids`` in ``poses``."""
        shape = ids.shape
        i = self.identity[ids.reshape(-1)].to(self.render_device)
        m = self.motion[ids.reshape(-1), poses.reshape(-1)].to(self.render_device)
        p = self.landmarks[ids.reshape(-1), poses.reshape(-1)].to(self.render_device)
        s = self.size
        frames = to_uint8(render_faces(i, m, s)).view(*shape, 3, s, s)
        return frames, to_uint8(rasterize_landmarks(p, s)).view(*shape, N_PARTS, s, s)

    def frames(self, index: torch.Tensor) -> torch.Tensor:
        """Single frames as bytes ``(len(index), 3, S, S)``, by flat index ``identity * n_poses + pose``."""
        if self.cached:
            return self.images.flatten(0, 1)[index]
        return self._render(index // self.n_poses, index % self.n_poses)[0]

    @classmethod
    def from_tracks(cls, images: torch.Tensor, points: torch.Tensor) -> FacePool:
        """A pool from real face tracks: ``images`` (n_ids, n_poses, 3, S, S) in [0, 1] and their
        landmarks ``points`` (n_ids, n_poses, 68, 2) in [-1, 1] (e.g. from
        :func:`animlib.data.prepared.face_tracks`, VoxCeleb with dlib landmarks). One track is one
        identity; ``identity`` and ``motion`` are unknown (NaN).
        """
        if images.ndim != 5 or images.shape[2] != 3 or points.shape != (*images.shape[:2], 68, 2):
            raise ValueError(f"need images (n_ids, n_poses, 3, S, S) and points (n_ids, n_poses, 68, 2); got "
                             f"{tuple(images.shape)} and {tuple(points.shape)}")
        n_ids, n_poses, _, size, _ = images.shape
        if n_poses < 2:
            raise ValueError(f"each track needs at least 2 frames, got {n_poses}")
        pool = cls.__new__(cls)
        pool.size, pool.n_ids, pool.n_poses = size, n_ids, n_poses
        pool.render_device, pool.cached = images.device, True
        pool.nbytes = n_ids * n_poses * (3 + N_PARTS) * size * size
        pool.identity = torch.full((n_ids, 8), float("nan"))
        pool.motion = torch.full((n_ids, n_poses, 5), float("nan"))
        pool.images = to_uint8(images)
        pool.landmarks = points.float()
        pool.lm_images = to_uint8(torch.cat([rasterize_landmarks(p, size) for p in points.float()])).view(
            n_ids, n_poses, N_PARTS, size, size)
        return pool

    def batch(self, batch_size: int, k: int, generator: torch.Generator,
              ids: torch.Tensor | None = None, device=None) -> Tuple[torch.Tensor, ...]:
        """``(src (B, K, 3, S, S), src_lm (B, K, P, S, S), tgt (B, 3, S, S), tgt_lm (B, P, S, S), idx (B,))``.

        The frames are drawn and gathered on the host as bytes (:meth:`gather`); ``device``
        (default: the CPU) is where they become floats and where everything returned lives, so a
        GPU receives a quarter of the bytes and converts them itself.
        """
        frames, lm, idx = self.gather(batch_size, k, generator, ids)
        dev = torch.device(device) if device is not None else (self.images.device if self.cached else frames.device)
        x = to_float(frames.to(dev, non_blocking=True))
        y = to_float(lm.to(dev, non_blocking=True))
        return x[:, :k], y[:, :k], x[:, k], y[:, k], idx.to(dev)

    def gather(self, batch_size: int, k: int, generator: torch.Generator,
               ids: torch.Tensor | None = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The host's part of :meth:`batch`: ``(frames (B, K+1, 3, S, S), landmark images (B, K+1, P, S, S),
        idx (B,))`` as stored (bytes), K source frames and then the target of ``batch_size`` identities
        (``ids``, or drawn on ``generator``)."""
        if k + 1 > self.n_poses:
            raise ValueError(f"K={k} source frames plus a target need n_poses >= {k + 1}; this pool has {self.n_poses}")
        idx = torch.randint(0, self.n_ids, (batch_size,), generator=generator) if ids is None else ids
        order = torch.rand(idx.shape[0], self.n_poses, generator=generator).argsort(1)[:, : k + 1]  # (B, K+1)
        rows = idx[:, None].expand_as(order)
        if not self.cached:  # rendered now, where the pool renders (the training device)
            return (*self._render(rows, order), idx)
        return self.images[rows, order], self.lm_images[rows, order], idx


def _follow(module: nn.Module | None, device: torch.device) -> None:
    """Move a frozen helper network (the perceptual loss's VGG) to where the training runs, once."""
    p = next(module.parameters(), None) if module is not None else None
    if p is not None and p.device != device:
        module.to(device)


# ----------------------------------------------------------------------------------------------
# training steps
# ----------------------------------------------------------------------------------------------
@dataclass
class ReenactStep:
    """One meta-learning step for the engine (models ``"e"``, ``"g"``, ``"d"``; optimisers ``"g"``, ``"d"``).

    Batch: :meth:`FacePool.batch`. With ``ê = E(src, src_lm)`` and ``x̂ = G(tgt_lm, ê)`` (or
    ``G(tgt, ê)`` for ``driver="image"``):

    - **D step** (optimiser ``"d"``): hinge loss ``relu(1 − r(x)) + relu(1 + r(x̂))`` on the real target
      and the *detached* fake, for the batch's identities;
    - **E+G step** (optimiser ``"g"``): ``cnt · L_CNT + adv · (−r(x̂)) + fm · L_FM + mch · L_MCH``,
      feature matching against the real frame's D maps from the D step (detached; one pass saved).
      Its gradients reach D's parameters too (through ``r`` and ``W_i``), but only E's and G's
      optimiser steps; D's gradients are cleared before D's next update.
    """

    cnt: float = 10.0  # weight of the pixel-pyramid (+ VGG) content loss
    adv: float = 0.1  # weight of the adversarial term
    fm: float = 1.0  # weight of feature matching on D's layers
    mch: float = 1.0  # weight of the embedding-match term L_MCH
    vgg: Optional[nn.Module] = None  # a frozen FeatureExtractor for the perceptual part of L_CNT
    vgg_weight: float = 0.0  # its weight inside L_CNT
    loss: str = "hinge"

    def __call__(self, trainer: Trainer, batch) -> Dict[str, torch.Tensor]:
        src, src_lm, tgt, tgt_lm, idx = batch
        E, G, D = trainer.models["e"], trainer.models["g"], trainer.models["d"]
        _follow(self.vgg, tgt.device)
        d_loss_fn, g_loss_fn = get_gan_loss(self.loss)
        image_driver = trainer.raw_models["g"].config.driver == "image"
        with trainer.autocast():
            e = E(src, src_lm)
            fake = G(tgt if image_driver else tgt_lm, e=e).float()
            r_real, f_real = D(tgt, tgt_lm, i=idx)
            r_fake, _ = D(fake.detach(), tgt_lm, i=idx)
        d_loss = d_loss_fn(r_real.float(), r_fake.float())
        trainer.optimize(d_loss, "d")
        with trainer.autocast():
            r_gen, f_gen = D(fake, tgt_lm, i=idx)  # feature-matching targets: D's real maps from its own step
        cnt = multiscale_content_loss(fake, tgt, vgg=self.vgg, vgg_weight=self.vgg_weight)
        adv = g_loss_fn(r_gen.float())
        fm = feature_matching_loss([f.float() for f in f_gen], [f.float() for f in f_real])
        mch = match_loss(trainer.raw_models["d"].W(idx), e.float())
        g_loss = self.cnt * cnt + self.adv * adv + self.fm * fm + self.mch * mch
        trainer.optimize(g_loss, "g")
        return {"loss": g_loss.detach(), "d_loss": d_loss.detach(), "cnt": cnt.detach(), "adv": adv.detach(),
                "fm": fm.detach(), "mch": mch.detach(), "d_real": r_real.detach().mean(),
                "d_fake": r_fake.detach().mean()}


@dataclass
class WarpStep:
    """One step of the warping baseline: warp the first source frame to the target's landmarks, L_CNT."""

    def __call__(self, trainer: Trainer, batch) -> Dict[str, torch.Tensor]:
        src, src_lm, tgt, tgt_lm, _ = batch
        with trainer.autocast():
            fake = trainer.models["model"](src[:, 0], src_lm[:, 0], tgt_lm).float()
        loss = multiscale_content_loss(fake, tgt)
        trainer.optimize(loss, "model")
        return {"loss": loss.detach()}


def _pool_data(pool: FacePool, batch_size: int, k: int, seed: int, device=None):
    g = as_generator(seed)
    return lambda step: pool.batch(batch_size, k, g, device=device)


def meta_train(pool: FacePool, steps: int, *, config: ReenactConfig | None = None, batch_size: int = 16,
               k: int = 4, lr_g: float = 1e-3, lr_d: float = 2e-3, step: ReenactStep | None = None, seed: int = 0,
               device="auto", amp=None, progress: bool = True, desc: str = "meta-learning",
               **trainer_kwargs) -> Trainer:
    """Meta-learning over the pool's identities (Zakharov's first stage), through the engine.

    Returns the :class:`~animlib.engine.Trainer`: ``trainer.raw_models["e"|"g"|"d"]`` are the
    embedder, generator and discriminator, ``trainer.history`` the losses. Adam with β = (0.5, 0.999)
    (Zakharov's repositories use 5e-5 / 2e-4 at 256 px; small nets on synthetic faces take larger steps).
    """
    cfg = config or ReenactConfig(image_size=pool.size)
    if cfg.image_size != pool.size:
        raise ValueError(f"config.image_size {cfg.image_size} != the pool's image size {pool.size}")
    torch.manual_seed(seed)
    E, G, D = Embedder(cfg), FaceGenerator(cfg), ProjectionDiscriminator(cfg, n_identities=pool.n_ids)
    opt_g = torch.optim.Adam(list(E.parameters()) + list(G.parameters()), lr=lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    # both learning rates decay along a half cosine to 10 % (short runs end sharper)
    sched = {n: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 0.1 + 0.45 * (1 + math.cos(math.pi * min(t / max(steps, 1), 1.0))))
             for n, o in (("g", opt_g), ("d", opt_d))}
    trainer = Trainer({"e": E, "g": G, "d": D}, {"g": opt_g, "d": opt_d}, step or ReenactStep(), schedulers=sched,
                      device=device, amp=amp, progress=progress, desc=desc, **trainer_kwargs)
    trainer.fit(_pool_data(pool, batch_size, k, seed + 1, trainer.device), steps)
    for m in trainer.raw_models.values():
        m.eval()
    return trainer


def train_warp(pool: FacePool, steps: int, *, config: ReenactConfig | None = None, batch_size: int = 16,
               lr: float = 1e-3, seed: int = 0, device="auto", amp=None, progress: bool = True,
               **trainer_kwargs) -> Trainer:
    """Train the X2Face-style :class:`WarpGenerator` on the same episodes (self-reenactment, L_CNT).

    Returns the :class:`~animlib.engine.Trainer`, like every ``train_*`` function:
    ``trainer.raw_models["model"]`` is the warp, in eval mode."""
    cfg = config or ReenactConfig(image_size=pool.size)
    torch.manual_seed(seed)
    model = WarpGenerator(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    trainer = Trainer({"model": model}, {"model": opt}, WarpStep(), device=device, amp=amp, progress=progress,
                      desc="warp baseline", **trainer_kwargs)
    trainer.fit(_pool_data(pool, batch_size, 1, seed + 1, trainer.device), steps)
    model.eval()
    return trainer


# ----------------------------------------------------------------------------------------------
# few-shot fine-tuning and inference
# ----------------------------------------------------------------------------------------------
def finetune(embedder: Embedder, generator: FaceGenerator, discriminator: ProjectionDiscriminator,
             frames: torch.Tensor, lm_images: torch.Tensor, steps: int, *, lr_g: float = 5e-4, lr_d: float = 2e-3,
             step: ReenactStep | None = None, batch_size: int = 8, seed: int = 0, device="auto",
             progress: bool = False) -> Tuple[FaceGenerator, torch.Tensor]:
    """Few-shot fine-tuning on K frames of one new person (Zakharov's second stage).

    ``frames`` (K, 3, S, S) and their landmark images (K, P, S, S). ψ' starts at ``P ê`` and the
    discriminator's identity vector at ``ê`` (that is what L_MCH trained ``W_i`` to resemble); then
    copies of G (with ψ' as free parameters) and D train on the K shots, each reconstructing itself
    from its own landmarks with ``cnt · L_CNT + adv · (−r) + fm · L_FM`` (no L_MCH). The original
    networks are not changed. Returns ``(G', ψ')``: drive the new person with ``G'(y, psi=ψ')``.
    """
    if frames.ndim != 4 or lm_images.shape[0] != frames.shape[0]:
        raise ValueError(f"need frames (K, 3, S, S) with landmark images (K, P, S, S); got {tuple(frames.shape)}, "
                         f"{tuple(lm_images.shape)}")
    dev = next(generator.parameters()).device if device in (None, "auto") else torch.device(device)
    frames, lm_images = frames.to(dev), lm_images.to(dev)
    st = step or ReenactStep()
    with torch.no_grad():
        e = embedder.to(dev).eval()(frames[None], lm_images[None])  # (1, E)
    G, D = copy.deepcopy(generator).to(dev).train(), copy.deepcopy(discriminator).to(dev).train()
    _follow(st.vgg, dev)
    psi, w = HeldTensor(G.adain_params(e)), HeldTensor(e)  # ψ' and the discriminator's w', trained here
    opt_g = torch.optim.Adam(list(G.parameters()) + [psi.value], lr=lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D.parameters()) + [w.value], lr=lr_d, betas=(0.5, 0.999))
    g = as_generator(seed)

    def shots(_step: int):
        j = torch.randint(0, frames.shape[0], (batch_size,), generator=g).to(dev)
        return frames[j], lm_images[j]

    trainer = Trainer({"g": G, "d": D, "psi": psi, "w": w}, {"g": opt_g, "d": opt_d},
                      FinetuneStep(st, image_driver=G.config.driver == "image"), device=dev, progress=progress,
                      desc="fine-tune", shard_batches=False)
    trainer.fit(shots, steps)
    return G.eval(), psi.value.detach()


class HeldTensor(nn.Module):
    """A tensor trained as a parameter of its own (fine-tuning's ψ' and w'), so the engine holds it."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = nn.Parameter(value.detach().clone())


@dataclass
class FinetuneStep:
    """One step of few-shot fine-tuning (Zakharov's second stage) for the engine.

    Models ``"g"`` (the generator copy), ``"d"`` (the discriminator copy), ``"psi"`` and ``"w"``
    (:class:`HeldTensor`); optimisers ``"g"`` (G and ψ') and ``"d"`` (D and w'). Batch: K-shot frames
    and their landmark images. D step on the hinge loss, then G step on
    ``cnt · L_CNT + adv · (−r) + fm · L_FM`` (no L_MCH).
    """

    step: ReenactStep
    image_driver: bool = False

    def __call__(self, t: Trainer, batch) -> Dict[str, torch.Tensor]:
        st = self.step
        d_loss_fn, g_loss_fn = get_gan_loss(st.loss)
        x, y = batch
        G, D = t.models["g"], t.models["d"]
        psi, w = t.models["psi"].value, t.models["w"].value
        fake = G(x if self.image_driver else y, psi=psi)
        r_real, f_real = D(x, y, w=w)
        r_fake, _ = D(fake.detach(), y, w=w)
        d_loss = d_loss_fn(r_real, r_fake)
        t.optimize(d_loss, "d")
        r_gen, f_gen = D(fake, y, w=w)
        g_loss = (st.cnt * multiscale_content_loss(fake, x, vgg=st.vgg, vgg_weight=st.vgg_weight) + st.adv * g_loss_fn(r_gen)
                  + st.fm * feature_matching_loss(f_gen, [f.detach() for f in f_real]))
        t.optimize(g_loss, "g")
        return {"loss": g_loss.detach(), "d_loss": d_loss.detach()}


@torch.no_grad()
def animate(generator: FaceGenerator, driver: torch.Tensor, e: torch.Tensor | None = None,
            psi: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
    """Frames for drivers (N, C, S, S) or (N, T, C, S, S) with identity ``e`` / ``psi`` ((N, ·) or (1, ·))."""
    generator.eval()
    dev = next(generator.parameters()).device
    lead = driver.shape[:-3]
    flat = driver.reshape(-1, *driver.shape[-3:])
    ident = e if e is not None else psi
    if ident.shape[0] not in (1, flat.shape[0]):  # one identity per clip: repeat it over the clip's frames
        ident = ident.repeat_interleave(flat.shape[0] // ident.shape[0], 0)
    out = []
    for a in range(0, flat.shape[0], batch_size):
        idn = ident if ident.shape[0] == 1 else ident[a : a + batch_size]
        kw = {"e": idn.to(dev)} if e is not None else {"psi": idn.to(dev)}
        out.append(generator(flat[a : a + batch_size].to(dev), **kw).cpu())
    return torch.cat(out).reshape(*lead, 3, *driver.shape[-2:])


def landmark_warp(image: torch.Tensor, source_points: torch.Tensor, target_points: torch.Tensor,
                  sigma: float | None = None) -> torch.Tensor:
    """Move a photograph's landmarks to new positions with a smooth warp (no learning): (T, 3, H, W).

    ``image`` (3, H, W), ``source_points`` (68, 2) its landmarks and ``target_points`` (T, 68, 2)
    where they should go, all in [-1, 1]. The backward map is ``q(p) = p + u(p)`` with
    ``u(p) = Σ_k φ_k(p) d_k / Σ_k φ_k(p)``, a Gaussian-weighted average (``φ_k(p) = exp(−|p −
    c_k|² / 2σ²)``) of the displacements ``d_k = source_k − target_k`` at the target landmarks
    ``c_k`` and ``d = 0`` at 32 anchors on the image border, so the background stays put. A
    weighted average never overshoots (unlike an interpolating spline far from its centres).
    ``sigma`` defaults to a third of the source's inter-ocular distance. This is how the book
    animates a real photograph with relative landmark motion offline: a classical warp, which
    (like X2Face) can only move the pixels the photo has.
    """
    if image.ndim != 3 or source_points.shape != (68, 2) or target_points.ndim != 3:
        raise ValueError(f"need image (3, H, W), source_points (68, 2), target_points (T, 68, 2); got "
                         f"{tuple(image.shape)}, {tuple(source_points.shape)}, {tuple(target_points.shape)}")
    dev, dt = image.device, torch.float32
    src, tgt = source_points.to(dev, dt), target_points.to(dev, dt)
    s = float(sigma) if sigma is not None else float(interocular_distance(src)) / 3
    t = torch.linspace(-1, 1, 9, device=dev)[:-1]
    one = torch.ones_like(t)
    border = torch.cat([torch.stack([t, -one], 1), torch.stack([one, t], 1), torch.stack([-t, one], 1),
                        torch.stack([-one, -t], 1)])  # (32, 2)
    H, W = image.shape[1:]
    theta = torch.eye(2, 3, device=dev, dtype=dt)[None]
    pix = F.affine_grid(theta, (1, 3, H, W), align_corners=False).view(-1, 2)  # (HW, 2) output pixel centres
    frames = []
    for k in range(tgt.shape[0]):
        centers = torch.cat([tgt[k], border])  # (100, 2)
        disp = torch.cat([src - tgt[k], torch.zeros_like(border)])  # (100, 2)
        phi = torch.exp(-torch.cdist(pix, centers).pow(2) / (2 * s * s))  # (HW, 100)
        u = (phi @ disp) / (phi.sum(1, keepdim=True) + 1e-8)
        grid = (pix + u).view(1, H, W, 2)
        frames.append(F.grid_sample(image[None].to(dt), grid, mode="bilinear", padding_mode="border",
                                    align_corners=False)[0])
    return torch.stack(frames).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# chapter 8's sizes
# ----------------------------------------------------------------------------------------------
@dataclass
class ReenactSettings(ProfileSettings):
    """Everything chapter 8 sizes by profile.

    ``quick``: 32×32 synthetic faces, small networks, a few CPU minutes. ``full``: 128×128 faces,
    wider networks, K = 8 source frames in training and the perceptual VGG term, on a GPU.
    """

    size: int  # image side in pixels
    width: int  # network width (first conv's channels)
    embed_dim: int  # identity vector length
    n_res: int  # AdaIN residual blocks in the generator
    n_ids: int  # training identities in the pool
    n_poses: int  # poses per identity
    batch: int  # episodes per step
    k_train: int  # source frames per episode in meta-learning
    steps: int  # meta-learning steps (the landmark model)
    image_steps: int  # meta-learning steps of the driver-image ablation
    warp_steps: int  # steps of the warping baseline
    vae_steps: int  # steps of the latent-difference VAE
    vae_latent: int  # its latent size
    reg_steps: int  # steps of the face-parameter regressor that scores everything
    finetune_steps: int  # few-shot fine-tuning steps
    n_test: int  # cross-identity test pairs
    frames: int  # frames per driving clip
    n_fewshot: int  # unseen identities for the few-shot experiment
    vgg_weight: float  # perceptual term inside L_CNT (0: off)
    lr_g: float  # Adam learning rate of E and G
    lr_d: float  # Adam learning rate of D

    @classmethod
    def quick(cls) -> ReenactSettings:
        return cls(size=32, width=16, embed_dim=64, n_res=1, n_ids=1000, n_poses=8, batch=16, k_train=2, steps=1000,
                   image_steps=400, warp_steps=400, vae_steps=400, vae_latent=32, reg_steps=400, finetune_steps=30,
                   n_test=48, frames=12, n_fewshot=6, vgg_weight=0.0, lr_g=1e-3, lr_d=2e-3)

    @classmethod
    def full(cls) -> ReenactSettings:
        return cls(size=128, width=32, embed_dim=256, n_res=4, n_ids=20_000, n_poses=10, batch=32, k_train=8, steps=60_000,
                   image_steps=30_000, warp_steps=20_000, vae_steps=20_000, vae_latent=128, reg_steps=8_000,
                   finetune_steps=300, n_test=400, frames=24, n_fewshot=32, vgg_weight=1.0, lr_g=2e-4, lr_d=8e-4)

    def config(self, driver: str = "landmarks") -> ReenactConfig:
        levels = 2 if self.size <= 32 else 3
        return ReenactConfig(image_size=self.size, width=self.width, levels=levels, n_res=self.n_res,
                             embed_dim=self.embed_dim, driver=driver)

