"""Bad input across the public API: each case gets the right error type and a message that says
what was wrong and how to fix it, before any expensive work; undefined metrics are skipped."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from animlib import backbones as B
from animlib import style as S
from animlib import vae as V
from animlib.cinemagraph import CinemagraphConfig, CinemagraphDRQN, FrameDiscriminator
from animlib.convlstm import ConvLSTMCell, PeepholeLSTMCell
from animlib.data.download import UnsafeArchiveError, extract_archive
from animlib.data.faces import render_faces, sample_identity, sample_motion
from animlib.data.folders import FrameFolderDataset, ImageFolderDataset, load_image
from animlib.depth import Hourglass, HourglassConfig, PointPairs, RelativeDepthStep, gather_pairs
from animlib.engine import SupervisedStep, Trainer, batched_inference
from animlib.fast_style import TransformerConfig, TransformerNet, train_fast_style
from animlib.gan import ToyDiscriminator
from animlib.reenact import N_PARTS, ProjectionDiscriminator
from animlib.runtime import get_device, seed_everything, start_chapter
from animlib.vaegan import VAEGANDiscriminator
from animlib.video_ae import GRUAEConfig, check_clips, clip_batches

LIN = torch.nn.Linear(2, 1)
STEP = SupervisedStep(lambda m, b: m(b).sum())
RANDOM_VGG = None


def _vgg():
    global RANDOM_VGG
    if RANDOM_VGG is None:
        RANDOM_VGG = B.FeatureExtractor(("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3"), "random")
    return RANDOM_VGG


def _trainer(**kw):
    return Trainer(LIN, torch.optim.SGD(LIN.parameters(), 0.1), STEP, device="cpu", progress=False, **kw)


def _vae_fit(images):
    vae = V.ConvVAE(V.ConvVAEConfig(image_size=16, latent_dim=4, width=4, dec_width=4))
    t = Trainer({"vae": vae}, {"vae": torch.optim.Adam(vae.parameters())}, V.VAEStep(), device="cpu", progress=False)
    t.fit(lambda s: images, 1)


def _pairs(ya, xa, yb, xb, b=0):
    return PointPairs(*(torch.tensor([v]) for v in (b, ya, xa, yb, xb, 1)))  # one pair, "a farther"


def _stylize(**kw):
    args = dict(content=torch.rand(1, 3, 16, 16), style=torch.rand(1, 3, 16, 16), extractor=_vgg(), steps=1,
                progress=False, device="cpu")
    args.update(kw)
    return S.stylize(**args)


CASES = [
    # (what, callable, error type, message fragment)
    ("VAE images in 0..255", lambda: _vae_fit(torch.rand(2, 3, 16, 16) * 255), ValueError, "divide 0..255 images by 255"),
    ("VAE uint8 images", lambda: _vae_fit(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)), TypeError, "divide uint8"),
    ("VAE images below 0", lambda: _vae_fit(torch.rand(2, 3, 16, 16) - 0.5), ValueError, "must lie in [0, 1]"),
    ("VAE batch not images", lambda: _vae_fit(torch.rand(2, 16)), ValueError, "(B, C, H, W)"),
    ("negative beta", lambda: V.VAEStep(beta=-1.0), ValueError, "maximise the KL"),
    ("negative KL warm-up", lambda: V.VAEStep(warmup_steps=-5), ValueError, "warmup_steps"),
    ("latent of the wrong size", lambda: V.ConvVAE(V.ConvVAEConfig(image_size=16, latent_dim=4)).decode(torch.zeros(2, 5)),
     ValueError, "latents of shape (B, 4)"),
    ("style content in 0..255", lambda: _stylize(content=torch.rand(1, 3, 16, 16) * 255), ValueError, "divide 0..255"),
    ("style image as uint8", lambda: _stylize(style=torch.zeros(1, 3, 16, 16, dtype=torch.uint8)), TypeError, "divide uint8"),
    ("style image with NaN", lambda: _stylize(style=torch.full((1, 3, 16, 16), float("nan"))), ValueError, "NaN or inf"),
    ("style image gray", lambda: _stylize(content=torch.rand(1, 1, 16, 16)), ValueError, "RGB image"),
    ("negative stylize steps", lambda: _stylize(steps=-1), ValueError, "non-negative int"),
    ("unknown optimiser", lambda: _stylize(optimizer="sgd"), ValueError, "'lbfgs' or 'adam'"),
    ("bad extra loss", lambda: _stylize(extra_losses={"depth": 1.0}), TypeError, "(weight, fn)"),
    ("extra loss named like a built-in", lambda: _stylize(extra_losses={"style": (1.0, lambda x: x.sum())}),
     ValueError, "clashes"),
    ("alpha map of the wrong size", lambda: _stylize(alpha=torch.ones(1, 1, 8, 8)), ValueError, "alpha map must be"),
    ("negative alpha", lambda: _stylize(alpha=-1.0), ValueError, "alpha must be >= 0"),
    ("init of the wrong shape", lambda: _stylize(init=torch.rand(1, 3, 8, 8)), ValueError, "init image must have"),
    ("unknown init", lambda: _stylize(init="zeros"), ValueError, "'content', 'noise'"),
    ("box weight 0", lambda: _stylize(box_weight=0), ValueError, "box_weight"),
    ("input pool 0", lambda: _stylize(input_pool=0), ValueError, "input_pool"),
    ("extractor without the layers", lambda: _stylize(extractor=B.FeatureExtractor(("conv_1_2",), "random")),
     ValueError, "does not compute"),
    ("two styles for fast transfer", lambda: train_fast_style(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), _vgg(),
                                                            steps=1, progress=False), ValueError, "single style"),
    ("fast transfer crop not /4", lambda: train_fast_style(torch.rand(1, 3, 16, 16), torch.rand(2, 3, 16, 16), _vgg(),
                                                         steps=1, image_size=30, progress=False), ValueError, "multiple of 4"),
    ("unknown norm", lambda: TransformerNet(TransformerConfig(norm="group")), ValueError, "'instance' or 'batch'"),
    ("negative grad_clip", lambda: _trainer(grad_clip=-1.0), ValueError, "grad_clip must be a positive number"),
    ("checkpoint_every -1", lambda: _trainer(checkpoint_every=-1), ValueError, "checkpoint_every must be"),
    ("log_every 0", lambda: _trainer(log_every=0), ValueError, "log_every"),
    ("scheduler without optimiser", lambda: _trainer(schedulers={"other": None}), ValueError, "have no optimiser"),
    ("step function not callable", lambda: Trainer(LIN, torch.optim.SGD(LIN.parameters(), 0.1), "step"), TypeError,
     "step_fn must be a callable"),
    ("negative steps", lambda: _trainer().fit(lambda s: torch.rand(1, 2), -1), ValueError, "steps must be >= 0"),
    ("unknown optimiser name", lambda: _trainer().optimize(torch.tensor(1.0, requires_grad=True), "other"), KeyError,
     "no optimiser named 'other'"),
    ("unknown device", lambda: get_device("tpu"), ValueError, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("device index on the CPU", lambda: get_device("cpu:1"), ValueError, "'cuda:N'"),
    ("unknown profile", lambda: start_chapter("t", profile="medium", device="cpu"), ValueError, "profile must be one of"),
    ("negative seed", lambda: seed_everything(-3), ValueError, "non-negative int"),
    ("empty inference", lambda: batched_inference(LIN, torch.zeros(0, 2), 4), ValueError, "no inputs"),
    ("batch size 0", lambda: batched_inference(LIN, torch.zeros(3, 2), 0), ValueError, "batch_size"),
    ("unknown VGG layer", lambda: B.FeatureExtractor(("conv_9_9",), "random"), ValueError, "unknown layer"),
    ("unknown weights", lambda: B.FeatureExtractor(("conv_1_2",), "imagenet"), ValueError, "weights must be one of"),
    ("unknown MobileNet block", lambda: B.MobileNetV2Features(("layer4",), "random"), ValueError, "block_0 .. block_18"),
    ("DRQN action out of range", lambda: CinemagraphDRQN(CinemagraphConfig(num_actions=4)).generator(
        torch.rand(2, 3, 32, 32), 2, actions=torch.tensor([[0, 1], [4, 0]])), ValueError, "integers in [0, 4)"),
    ("LSTM state of another batch", lambda: PeepholeLSTMCell(3, 5)(torch.rand(2, 3), (torch.zeros(4, 5), torch.zeros(4, 5))),
     ValueError, "must be two (2, 5) tensors"),
    ("ConvLSTM state of another batch", lambda: ConvLSTMCell(3, 4)(torch.rand(2, 3, 8, 8),
                                                                 (torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))),
     ValueError, "does not fit input"),
    ("clip with the wrong channels", lambda: check_clips(torch.rand(1, 4, 3, 16, 16), GRUAEConfig(frames=4, image_size=16)),
     ValueError, "resize the clips or change GRUAEConfig"),
    ("VAE-GAN discriminator wrong size", lambda: VAEGANDiscriminator()(torch.rand(2, 3, 32, 32)), ValueError, "expects images"),
    ("packed discriminator odd batch", lambda: ToyDiscriminator(pack=2)(torch.randn(3, 2)), ValueError, "multiple of pack"),
    ("face parameters of different counts", lambda: render_faces(sample_identity(3, 0), sample_motion(2, 0), 16), ValueError,
     "give one of each per face"),
    ("hourglass input not RGB", lambda: Hourglass(HourglassConfig(width=0.25))(torch.rand(1, 1, 32, 32)), ValueError,
     "expects images (B, 3, H, W)"),
    ("ConvLSTM frames as uint8", lambda: ConvLSTMCell(3, 4)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), TypeError,
     "expected float frames in [0, 1] (float32/bfloat16/float16); got uint8: convert with x.float() / 255"),
    ("ConvLSTM frames as float64", lambda: ConvLSTMCell(3, 4)(torch.rand(2, 3, 8, 8, dtype=torch.float64)), TypeError,
     "got float64: convert with x.float()"),
    ("gray image to the VAE-GAN discriminator", lambda: VAEGANDiscriminator()(torch.rand(2, 1, 64, 64)), ValueError,
     "expects 3-channel images (B, 3, H, W) but got 1 channel (2, 1, 64, 64): repeat gray images to RGB with "
     "x.expand(-1, 3, -1, -1) or build it with VAEGANDiscriminatorConfig(channels=1)"),
    ("gray frame to the cinemagraph discriminator", lambda: FrameDiscriminator()(torch.rand(2, 1, 32, 32)), ValueError,
     "x.expand(-1, 3, -1, -1) or build it with FrameDiscriminator(channels=1)"),
    ("gray frame to the projection discriminator", lambda: ProjectionDiscriminator()(
        torch.rand(2, 1, 32, 32), torch.rand(2, N_PARTS, 32, 32), i=torch.zeros(2, dtype=torch.long)), ValueError,
     "expects 3-channel images (B, 3, H, W) but got 1 channel (2, 1, 32, 32): repeat gray images to RGB with "
     "x.expand(-1, 3, -1, -1)"),
    ("style content smaller than the deepest layer", lambda: _stylize(content=torch.rand(1, 3, 4, 4)), ValueError,
     "the content image is 4×4 pixels, too small for layer 'conv_4_3', which needs at least 8×8"),
    ("style content too small after input_pool", lambda: _stylize(content=torch.rand(1, 3, 12, 12), input_pool=2),
     ValueError, "needs at least 16×16 (8×8 after input_pool=2)"),
    ("VGG features of a tiny image", lambda: _vgg()(torch.rand(1, 3, 4, 6)), ValueError,
     "layer 'conv_4_3' comes after 3 poolings that halve the image, so it needs images of at least 8×8 pixels; "
     "got 4×6"),
    ("point pairs below the depth map", lambda: gather_pairs(torch.rand(1, 1, 8, 8), _pairs(9, 2, 3, 3)), ValueError,
     "rows y in [3, 9], columns x in [2, 3], images b in [0, 0], but the map is 1 image(s) of 8×8"),
    ("point pairs with negative coordinates", lambda: gather_pairs(torch.rand(2, 1, 8, 8), _pairs(1, -1, 3, 3)),
     ValueError, "columns x in [-1, 3]"),
    ("point pairs of a missing image", lambda: gather_pairs(torch.rand(1, 1, 8, 8), _pairs(1, 1, 3, 3, b=1)),
     ValueError, "images b in [1, 1], but the map is 1 image(s)"),
    ("hourglass trained on one 16x16 image", lambda: Hourglass(HourglassConfig(width=0.25))(torch.rand(1, 3, 16, 16)),
     ValueError, "batch norm needs >= 2 images in train mode"),
    ("clip batches of size 0", lambda: clip_batches(torch.rand(2, 4, 1, 8, 8), batch_size=0), ValueError,
     "batch_size must be a positive int"),
]


@pytest.mark.parametrize("what,fn,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_useful_message(what, fn, error, fragment):
    with pytest.raises(error) as info:
        fn()
    assert fragment in str(info.value), f"{what}: {info.value}"


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_device_aliases_are_accepted(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device(" CPU ") == torch.device("cpu")
    for alias in ("GPU", "gpu:0", "CUDA"):  # understood as CUDA, which this machine lacks
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device(alias)


def test_a_truncated_image_names_its_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, format="PNG")
    path = tmp_path / "frame.png"
    path.write_bytes(buf.getvalue()[:60])
    with pytest.raises(OSError, match=r"could not read the image .*frame\.png"):
        load_image(path)


def _write_png(path, channels):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8, 3) if channels == 3 else (8, 8)
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)


def test_a_clip_mixing_gray_and_colour_says_how_to_fix_it(tmp_path):
    _write_png(tmp_path / "clip" / "00000.png", 3)
    _write_png(tmp_path / "clip" / "00001.png", 1)
    ds = FrameFolderDataset(tmp_path, marker=None, script="(test)")
    with pytest.raises(ValueError, match="mix gray and colour.*channels=1 or channels=3"):
        ds[0]
    assert FrameFolderDataset(tmp_path, marker=None, script="(test)", channels=3)[0].shape == (2, 3, 8, 8)


def test_an_image_folder_of_mixed_sizes_asks_for_size(tmp_path):
    for name, shape in (("a.png", (8, 8, 3)), ("b.png", (8, 8, 3)), ("sub/c.png", (12, 10, 3))):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros(shape, np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=r"a\.png is 8×8 but sub/c\.png is 12×10 \(H×W\).*pass size= .*size=8"):
        ImageFolderDataset(tmp_path, marker=None)
    assert ImageFolderDataset(tmp_path, marker=None, size=8)[2].shape == (3, 8, 8)


def test_valid_inputs_next_to_the_new_checks_still_run():
    cell = ConvLSTMCell(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, _ = cell(torch.rand(1, 3, 8, 8, dtype=torch.bfloat16))
    assert h.shape == (1, 4, 8, 8)
    assert ConvLSTMCell(3, 4).double()(torch.rand(1, 3, 8, 8, dtype=torch.float64))[0].dtype == torch.float64
    net = Hourglass(HourglassConfig(width=0.25))
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)  # two images: batch norm has two values
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)  # one image with a 2x2 innermost level
    assert net.eval()(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    z = torch.rand(1, 1, 8, 8)
    z_x, z_y, _ = gather_pairs(z, _pairs(7, 0, 0, 7))
    assert float(z_x) == float(z[0, 0, 7, 0]) and float(z_y) == float(z[0, 0, 0, 7])
    assert _vgg()(torch.rand(1, 3, 8, 8))["conv_4_3"].shape == (1, 512, 1, 1)
    assert VAEGANDiscriminator()(torch.rand(2, 3, 64, 64)).shape == (2,)


def test_a_label_table_cannot_point_outside_its_folder(tmp_path):
    root = tmp_path / "prepared"
    _write_png(root / "images" / "a.png", 3)
    _write_png(tmp_path / "private.png", 3)
    (root / "labels.json").write_text(json.dumps({"images/a.png": 0, "../private.png": 1}))
    with pytest.raises(ValueError, match="outside the prepared folder"):
        ImageFolderDataset(root, labels="labels.json", marker=None)


def test_a_decompression_bomb_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (32 * 2**20))  # 32 MiB of zeros compress about 1000:1
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnsafeArchiveError, match="in total"):  # the total cap, for any archive kind
        plain = tmp_path / "plain.zip"
        with zipfile.ZipFile(plain, "w") as zf:
            zf.writestr("a.bin", b"\1" * 4096)
        extract_archive(plain, tmp_path / "out2", max_bytes=1000)


def test_relative_depth_training_skips_an_undefined_accuracy():
    torch.manual_seed(0)
    net = Hourglass(HourglassConfig(width=0.25))
    flat = {"image": torch.rand(2, 3, 32, 32), "depth": torch.full((2, 1, 32, 32), 5.0)}  # a wall: all pairs equal
    t = Trainer(net, torch.optim.Adam(net.parameters(), 1e-3), RelativeDepthStep(n_pairs=64), device="cpu",
                progress=False)
    t.fit(lambda s: flat, 2)
    assert all("accuracy" not in h and np.isfinite(h["loss"]) for h in t.history)


def test_a_papermill_style_typo_is_refused_by_the_runner():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("run_chapters", root / "tools" / "run_chapters.py")
    rc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rc)
    problems = rc.check_parameters([root / "chapters" / "00_toolkit.md"], {"profil": "full", "profile": "quick",
                                                                           "device": "cpu"})
    assert problems and "no parameter 'profil'" in problems[0]


def test_images_exactly_at_the_range_ends_are_accepted():
    _stylize(content=torch.zeros(1, 3, 16, 16), style=torch.ones(1, 3, 16, 16))
    _vae_fit(torch.randint(0, 2, (2, 3, 16, 16)).float())
