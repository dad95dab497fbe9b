#!/usr/bin/env python3
"""Benchmarks: how fast the library's formulations are, as ratios measured in one process.

Every row times the library against a reference formulation written here (or reports a
machine-relative figure), with the median of several repeats, so the numbers say whether a step
is slow because the method is expensive or because the code is. Ratios are reported, never
asserted: they depend on the machine. Usage (from the repository root)::

    python benchmarks/run.py            # the default sizes, on the CPU
    python benchmarks/run.py --quick    # small sizes, a smoke run (make test runs this)
    python benchmarks/run.py --device cuda
    python benchmarks/run.py --estimate # the full profile's time on one GPU, on paper

It prints one table and writes ``benchmarks/results.json`` (``--out`` elsewhere). ``--estimate``
(see ``benchmarks/estimate.py``) counts the FLOPs and kernels of one training step of every run
of the full profile, prints the estimated time of each on one GPU and writes
``benchmarks/estimate.json`` and ``book/gpu_estimate.md``, the table the setup page shows.

Rows:

- **ConvLSTM**: the fused cell (one convolution for all four gates over ``cat([x, h])``) against a
  per-gate textbook cell (eight convolutions), forward and backward over ``T`` steps.
- **Gatys objective**: one evaluation of :class:`animlib.style.GatysLoss` (forward and backward)
  against the PyTorch-tutorial formulation (loss modules inserted after the layers of a copied
  network), on the same network, layers and image.
- **Engine overhead**: :meth:`animlib.engine.Trainer.fit` against a bare loop on the same model and
  batches, and the cost of one checkpoint.
- **Precision**: one convolutional training step in fp32, under bf16 autocast, and in
  ``channels_last`` memory layout, next to the choice ``amp="auto"`` makes here.
- **Achieved FLOP/s**: FLOPs of a training step (``torch.utils.flop_counter.FlopCounterMode``)
  per second, as a fraction of this machine's measured fp32 peak (the faster of a matrix product
  and a wide convolution).
- **Data**: batches per second of the synthetic generators against the step rate of the model
  they feed (above 1: the data is never the bottleneck).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from animlib import backbones as B  # noqa: E402
from animlib import style as S  # noqa: E402
from animlib.convlstm import ConvLSTMCell  # noqa: E402
from animlib.data.blobs import moving_blobs  # noqa: E402
from animlib.data.faces import SyntheticFaces  # noqa: E402
from animlib.data.scenes import SceneConfig, SceneStream  # noqa: E402
from animlib.engine import SupervisedStep, Trainer  # noqa: E402
from animlib.nextframe import NextFrameConfig, NextFrameNet  # noqa: E402
from animlib.precision import amp_label, cpu_bf16_support  # noqa: E402
from animlib.runtime import get_device  # noqa: E402
from animlib.vae import ConvVAE, ConvVAEConfig, VAEStep  # noqa: E402


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# ConvLSTM: fused vs per-gate
# ---------------------------------------------------------------------------------------------
class TextbookConvLSTMCell(nn.Module):
    """Shi et al.'s equations written gate by gate: eight convolutions (W_x and W_h for i, f, g, o)."""

    def __init__(self, cin: int, ch: int, k: int = 3):
        super().__init__()
        self.wx = nn.ModuleList([nn.Conv2d(cin, ch, k, padding=k // 2) for _ in range(4)])
        self.wh = nn.ModuleList([nn.Conv2d(ch, ch, k, padding=k // 2, bias=False) for _ in range(4)])
        self.w_ci, self.w_cf, self.w_co = (nn.Parameter(torch.zeros(ch, 1, 1)) for _ in range(3))

    def forward(self, x, state):
        h, c = state
        i = torch.sigmoid(self.wx[0](x) + self.wh[0](h) + self.w_ci * c)
        f = torch.sigmoid(self.wx[1](x) + self.wh[1](h) + self.w_cf * c)
        g = torch.tanh(self.wx[2](x) + self.wh[2](h))
        c = f * c + i * g
        o = torch.sigmoid(self.wx[3](x) + self.wh[3](h) + self.w_co * c)
        return o * torch.tanh(c), c


def bench_convlstm(dev, quick, repeats):
    B_, C, H, T = (4, 16, 16, 4) if quick else (8, 32, 32, 8)
    x = torch.randn(T, B_, C, H, H, device=dev)
    fused, textbook = ConvLSTMCell(C, C).to(dev), TextbookConvLSTMCell(C, C).to(dev)

    def run(cell, fused_cell: bool):
        h = c = torch.zeros(B_, C, H, H, device=dev)
        for t in range(T):
            h, c = cell(x[t], (h, c))
        h.square().mean().backward()

    t_fused = timed(lambda: run(fused, True), repeats, dev)
    t_ref = timed(lambda: run(textbook, False), repeats, dev)
    return {"row": "ConvLSTM fused vs per-gate (fwd+bwd over T steps)", "library_s": t_fused, "reference_s": t_ref,
            "speedup": t_ref / t_fused, "goal": ">= 1.5x"}


# ---------------------------------------------------------------------------------------------
# Gatys objective: GatysLoss vs tutorial-style loss modules
# ---------------------------------------------------------------------------------------------
class _ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class _StyleLoss(nn.Module):
    def __init__(self, target_gram):
        super().__init__()
        self.target = target_gram.detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = (S.gram_matrix(x) - self.target).pow(2).sum(dim=(1, 2)).mean()
        return x


def bench_gatys(dev, quick, repeats):
    size = 64 if quick else 128
    layers = ("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3")
    net = B.FeatureExtractor(layers, "random").to(dev)
    content, style = torch.rand(1, 3, size, size, device=dev), torch.rand(1, 3, size, size, device=dev)
    loss = S.GatysLoss.build(content, style, net, ("conv_2_2",), layers, 1.0, 1e3, 0.0, {}, 1, "kernel", None)
    x = content.clone().requires_grad_(True)

    def library():
        x.grad = None
        loss(x)["loss"].backward()

    # The tutorial formulation: a copy of the network with loss modules after the chosen layers.
    seq = nn.Sequential()
    index = net.layer_index
    last = max(index.values())
    content_mods, style_mods = [], []
    with torch.no_grad():
        feats = net(content), net(style)
    for i, layer in enumerate(net.features[: last + 1]):
        seq.add_module(str(i), copy.deepcopy(layer))
        for name, j in index.items():
            if j != i:
                continue
            if name == "conv_2_2":
                m = _ContentLoss(feats[0][name])
                seq.add_module(f"content_{name}", m)
                content_mods.append(m)
            m = _StyleLoss(S.gram_matrix(feats[1][name]))
            seq.add_module(f"style_{name}", m)
            style_mods.append(m)
    seq.requires_grad_(False)

    def tutorial():
        x.grad = None
        seq((x - net.mean) / net.std)
        total = sum(m.loss for m in content_mods) + 1e3 * sum(m.loss for m in style_mods)
        total.backward()

    t_lib = timed(library, repeats, dev)
    t_ref = timed(tutorial, repeats, dev)
    return {"row": f"Gatys objective, one evaluation at {size}px (fwd+bwd)", "library_s": t_lib, "reference_s": t_ref,
            "speedup": t_ref / t_lib, "goal": ">= 1.0x"}


# ---------------------------------------------------------------------------------------------
# Engine overhead and checkpoint cost
# ---------------------------------------------------------------------------------------------
def bench_engine(dev, quick, repeats, tmp: Path):
    steps = 20 if quick else 100
    torch.manual_seed(0)
    data = [(torch.randn(32, 2, 16, 16, device=dev), torch.randn(32, 1, 16, 16, device=dev)) for _ in range(8)]

    def loss_fn(m, b):
        return F.mse_loss(m(b[0]), b[1])

    def bare():
        m = NextFrameNet(NextFrameConfig()).to(dev)
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        for s in range(steps):
            b = data[s % len(data)]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(m, b)
            loss.backward()
            opt.step()
        float(loss.detach())

    def engine(every=0):
        m = NextFrameNet(NextFrameConfig())
        t = Trainer(m, torch.optim.Adam(m.parameters(), 1e-3), SupervisedStep(loss_fn), device=dev, progress=False,
                    checkpoint_dir=tmp if every else None, checkpoint_every=every)
        t.fit(lambda s: data[s % len(data)], steps)

    # Interleaved repeats (bare, engine, engine with checkpoints, bare, ...), so that a busy moment
    # of the machine hits all three alike; then the median of each.
    every = max(1, steps // 4)
    for fn in (bare, engine):
        fn()  # warm-up
    times = {"bare": [], "engine": [], "ckpt": []}
    for _ in range(repeats):
        for key, fn in (("bare", bare), ("engine", engine), ("ckpt", lambda: engine(every))):
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - t0)
    t_bare, t_engine, t_ckpt = (statistics.median(times[k]) for k in ("bare", "engine", "ckpt"))
    n_ckpt = steps // every + 1  # periodic ones and the final one
    return [
        {"row": f"Trainer.fit vs a bare loop ({steps} steps)", "library_s": t_engine, "reference_s": t_bare,
         "speedup": t_bare / t_engine, "overhead_percent": 100 * (t_engine / t_bare - 1), "goal": "<= 5 % overhead"},
        {"row": "one checkpoint (atomic write, fsync)", "library_s": (t_ckpt - t_engine) / n_ckpt, "reference_s": None,
         "speedup": None, "goal": "report"},
    ]


# ---------------------------------------------------------------------------------------------
# Precision and FLOP/s
# ---------------------------------------------------------------------------------------------
def _conv_step(dev, quick):
    torch.manual_seed(0)
    vae = ConvVAE(ConvVAEConfig(image_size=32, latent_dim=32, width=32, dec_width=32)).to(dev)
    x = torch.rand(16 if quick else 48, 3, 32, 32, device=dev)
    return vae, x


def bench_precision(dev, quick, repeats):
    rows = []
    base = None
    for label, amp, channels_last in [("fp32", None, False), ("bf16 autocast", "bf16", False),
                                      ("fp32 channels_last", None, True)]:
        vae, x = _conv_step(dev, quick)
        if channels_last:
            vae = vae.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with _quiet():
            t = Trainer({"vae": vae}, {"vae": torch.optim.Adam(vae.parameters(), 1e-3)}, VAEStep(), device=dev,
                        amp=amp, progress=False)
        secs = timed(lambda t=t, x=x: t.fit(lambda s: x, t.step + 1), repeats, dev)
        base = base or secs
        rows.append({"row": f"VAE training step, {label}", "library_s": secs, "reference_s": base, "speedup": base / secs,
                     "goal": "report"})
    rows.append({"row": f'amp="auto" picks {amp_label("auto", dev)} here'
                        + (f" ({cpu_bf16_support().reason})" if dev.type == "cpu" else ""),
                 "library_s": None, "reference_s": None, "speedup": None, "goal": "the fastest non-emulated"})
    return rows


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def machine_peak(dev, quick, repeats):
    """This machine's fp32 rate: a square matrix product, and the fastest of three 3x3 convolutions
    (narrow and wide). The BLAS behind ``@`` is not always the fastest kernel: on some CPUs oneDNN's
    convolutions run at twice its rate, which would put steps above "100 % of peak"."""
    n = 512 if quick else 1024
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    matmul = 2 * n**3 / timed(lambda: a @ b, repeats, dev)
    conv = 0.0
    for batch, ch, size in [(64, 32, 16), (16, 64, 32), (4, 128, 32)]:
        x, w = torch.randn(batch, ch, size, size, device=dev), torch.randn(ch, ch, 3, 3, device=dev)
        with torch.no_grad():
            secs = timed(lambda x=x, w=w: F.conv2d(x, w, padding=1), repeats, dev)
        conv = max(conv, 2 * batch * ch * ch * size * size * 9 / secs)
    return matmul, conv


def bench_flops(dev, quick, repeats, peak):
    rows = []
    cases: Dict[str, Callable[[], Callable[[], None]]] = {}

    def vae_case():
        vae, x = _conv_step(dev, quick)
        opt = torch.optim.Adam(vae.parameters(), 1e-3)
        step = VAEStep()

        class T:  # the smallest trainer a step needs
            models, autocast = {"vae": vae}, staticmethod(lambda: _null())
            step = 0

            @staticmethod
            def optimize(loss, name):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return lambda: step(T, x)

    def nextframe_case():
        m = NextFrameNet(NextFrameConfig(width=32)).to(dev)
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        x, y = torch.randn(64, 2, 16, 16, device=dev), torch.randn(64, 1, 16, 16, device=dev)

        def run():
            opt.zero_grad(set_to_none=True)
            F.mse_loss(m(x), y).backward()
            opt.step()
        return run

    cases["VAE step (conv)"] = vae_case
    cases["next-frame step (conv)"] = nextframe_case
    for name, make in cases.items():
        run = make()
        with FlopCounterMode(display=False) as counter:
            run()
        flops = counter.get_total_flops()
        secs = timed(run, repeats, dev)
        rows.append({"row": f"achieved FLOP/s, {name}", "library_s": secs, "reference_s": None,
                     "gflops": flops / secs / 1e9, "fraction_of_peak": flops / secs / peak, "speedup": None,
                     "goal": ">= 30 % of the peak"})
    return rows


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def bench_data(dev, quick, repeats):
    rows = []
    scene_cfg = SceneConfig(size=32, frames=8, num_classes=4)
    stream = SceneStream(16, scene_cfg, seed=0)
    counter = iter(range(10**9))
    t_scene = timed(lambda: stream(next(counter)), repeats, dev)
    t_blobs = timed(lambda: moving_blobs(64, 8, 16, seed=next(counter)), repeats, dev)
    t_faces = timed(lambda: SyntheticFaces(64, 32, seed=next(counter)), max(1, repeats // 2), dev)
    vae, x = _conv_step(dev, quick)
    with _quiet():
        t = Trainer({"vae": vae}, {"vae": torch.optim.Adam(vae.parameters(), 1e-3)}, VAEStep(), device=dev,
                    progress=False)
    t_step = timed(lambda: t.fit(lambda s: x[:16], t.step + 1), repeats, dev)
    for name, secs in [("SceneStream batch of 16 clips", t_scene), ("moving_blobs, 64 clips", t_blobs),
                       ("SyntheticFaces, 64 faces at 32px", t_faces)]:
        rows.append({"row": f"data: {name} vs a VAE step of 16", "library_s": secs, "reference_s": t_step,
                     "speedup": t_step / secs, "goal": "> 1 (data never the bottleneck)"})
    return rows


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, mps, auto")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 3 quick, 7 otherwise)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    ap.add_argument("--estimate", action="store_true",
                    help="estimate the full profile on one GPU from counted FLOPs (a few minutes on a CPU)")
    ap.add_argument("--gpu-tflops", type=float, default=None,
                    help="achieved TFLOP/s assumed by --estimate (default: an A100 in bf16 at 20 %% of peak)")
    ap.add_argument("--launch-us", type=float, default=None, help="microseconds per kernel launch (--estimate)")
    ap.add_argument("--h2d-gbps", type=float, default=None, help="host-to-GPU copy rate in GB/s (--estimate)")
    ap.add_argument("--chapters", nargs="*", default=None, help="--estimate only these chapters (e.g. 5 6)")
    args = ap.parse_args(argv)
    if args.estimate:
        return run_estimate(args)
    dev = get_device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    tmp = ROOT / "_build" / "bench_ckpt"
    rows: List[dict] = []
    matmul, conv = machine_peak(dev, args.quick, repeats)
    peak = max(matmul, conv)
    rows.append({"row": "fp32 matrix product", "library_s": None, "reference_s": None, "speedup": None,
                 "gflops": matmul / 1e9, "goal": "report"})
    rows.append({"row": "fp32 3x3 convolution, fastest of 3 shapes (the peak below: the faster of the two)",
                 "library_s": None, "reference_s": None, "speedup": None, "gflops": conv / 1e9, "goal": "report"})
    rows.append(bench_convlstm(dev, args.quick, repeats))
    rows.append(bench_gatys(dev, args.quick, repeats))
    rows += bench_engine(dev, args.quick, repeats, tmp)
    rows += bench_precision(dev, args.quick, repeats)
    rows += bench_flops(dev, args.quick, repeats, peak)
    rows += bench_data(dev, args.quick, repeats)

    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    lines = ["| benchmark | library (s) | reference (s) | ratio | GFLOP/s | of peak | goal |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = fmt(r.get("speedup"), ".2f") + ("x" if r.get("speedup") is not None else "")
        if "overhead_percent" in r:
            ratio += f" ({r['overhead_percent']:+.1f} %)"
        lines.append(f"| {r['row']} | {fmt(r.get('library_s'), '.4f')} | {fmt(r.get('reference_s'), '.4f')} | {ratio} | "
                     f"{fmt(r.get('gflops'), '.1f')} | {fmt(r.get('fraction_of_peak'), '.0%')} | {r['goal']} |")
    table = "\n".join(lines)
    machine = {"python": platform.python_version(), "torch": torch.__version__, "device": str(dev),
               "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "quick": args.quick, "repeats": repeats}
    print(f"benchmarks on {machine}\n{table}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def run_estimate(args) -> int:
    import estimate as E  # benchmarks/estimate.py, next to this file

    result = E.estimate(args.gpu_tflops or E.DEFAULT_TFLOPS, args.launch_us or E.DEFAULT_LAUNCH_US,
                        only=args.chapters, h2d_gbps=args.h2d_gbps or E.DEFAULT_H2D_GBPS)
    table = E.markdown(result)
    print(table)
    if args.chapters:  # a partial estimate is printed, not published
        return 0
    out = ROOT / "benchmarks" / "estimate.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    page = ROOT / "book" / "gpu_estimate.md"
    page.write_text("<!-- written by `python benchmarks/run.py --estimate`; do not edit -->\n" + table)
    print(f"wrote {out} and {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
