"""One small training loop for every method in the book.

A :class:`Trainer` owns named models, optimisers and (optionally) schedulers, and calls *your* step
function once per step. The step function decides what a step is: one supervised update, a
discriminator update followed by a generator update, an RL rollout plus a Q-learning update, or an
L-BFGS step on the pixels of an image. The trainer supplies everything around it:

- device placement of models and batches (``device="auto"``: CUDA, MPS, CPU);
- mixed precision with ``torch.autocast`` (bf16, or fp16 with a ``GradScaler`` per optimiser on
  CUDA; bf16 on a CPU that computes it natively, measured, with ``amp="auto"``) through :meth:`Trainer.autocast` and :meth:`Trainer.optimize`;
- gradient clipping, a ``tqdm.auto`` progress bar with the live loss, a metrics history;
- NaN/inf detection: every loss and metric, and every gradient before its update, is checked;
  training stops with :class:`NonFiniteLossError`, naming the step, the value (down to the
  parameter whose gradient broke) and the last checkpoint that really is good (a checkpoint of the
  very state that diverged is set aside as ``last.nonfinite.pt``); a checkpoint is never written
  from non-finite weights;
- interrupts that lose nothing: Ctrl-C (SIGINT) or SIGTERM during :meth:`Trainer.fit` finishes the
  current step, saves, then raises ``KeyboardInterrupt`` (``SystemExit`` for SIGTERM), so a resumed
  run is bit-identical to one never stopped; a second Ctrl-C stops at once and keeps the last
  checkpoint; a ``KeyboardInterrupt`` from elsewhere (the step function, the data) saves the last
  consistent state too;
- atomic checkpoints (temporary file, ``fsync``, ``os.replace``; the one before kept as
  ``last.previous.pt`` by a hard link, so ``last.pt`` is complete at every instant, even under
  ``kill -9``; a resume falls back to the newest one that loads, and says so) that load with
  ``torch.load(weights_only=True)`` and resume *exactly*: models, optimisers, scalers, schedulers,
  registered extra state (a replay buffer, an image being optimised), every RNG state, the step
  counter and the position inside the current epoch of a ``DataLoader``;
- ``DistributedDataParallel`` under ``torchrun`` (NCCL on CUDA, gloo on CPU), with batches split
  across ranks.

A minimal use::

    def step(t, batch):
        x, y = batch
        with t.autocast():
            loss = F.cross_entropy(t.models["model"](x), y)
        t.optimize(loss, "model")
        return {"loss": loss}

    trainer = Trainer({"model": net}, {"model": torch.optim.Adam(net.parameters())}, step)
    history = trainer.fit(loader, steps=1000)

After training, :func:`batched_inference` runs a model over many inputs the one way every method
module does: no gradients, evaluation mode, batches on the model's device, results collected on
the CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .files import atomic_copy, atomic_torch_save
from .rehearsal import cap_batch
from .runtime import cpu_bf16_support, get_device, peak_memory_mb, work_cap

__all__ = [
    "Trainer",
    "fit",
    "SupervisedStep",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "move_to_device",
    "shard_batch",
    "resolve_amp",
    "amp_label",
    "batched_inference",
    "compile_mode",
]

StepFn = Callable[["Trainer", Any], Mapping[str, Any]]


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss or metric becomes NaN or infinite.

    Attributes: ``step`` (1-based step that produced it), ``name`` (which value: a loss, a metric,
    ``"gradient of <model>.<parameter>"`` or ``"parameter <model>.<name>"``), ``last_finite`` (the
    last finite loss, or None), ``checkpoint`` and ``checkpoint_step`` (the last good checkpoint on
    disk and the step it holds, or None) and ``set_aside`` (a checkpoint of the very state that
    produced the value, renamed ``*.nonfinite.pt``, or None).
    """

    def __init__(self, step: int, name: str, value: float, last_finite: Optional[float],
                 checkpoint: Optional[Path], checkpoint_step: Optional[int] = None,
                 set_aside: Optional[Path] = None, checkpointing: bool = True):
        self.step, self.name, self.value = step, name, value
        self.last_finite, self.checkpoint, self.checkpoint_step = last_finite, checkpoint, checkpoint_step
        self.set_aside = set_aside
        at = f" (after step {checkpoint_step})" if checkpoint_step is not None else ""
        if checkpoint is not None:
            where = f"the last good checkpoint is {checkpoint}{at}"
        elif checkpointing:
            where = "no checkpoint from before the divergence is on disk"
        else:
            where = "no checkpoint was written (pass checkpoint_dir= to keep one)"
        if set_aside is not None:
            where += f"; the checkpoint of the state that diverged was moved to {set_aside}"
        last = f"{last_finite:.6g}" if last_finite is not None else "none yet"
        super().__init__(
            f"{name} became {value} at step {step} (last finite loss: {last}); training stopped and "
            f"{where}. Lower the learning rate, clip gradients (grad_clip=...) or check the inputs."
        )


def _first_nonfinite(named: Iterable[Tuple[str, torch.Tensor]]) -> Optional[Tuple[str, float]]:
    """The first (name, offending value) among floating tensors holding NaN or inf, else None."""
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = t.detach()[~torch.isfinite(t.detach())].flatten()[0]
            return name, float(bad)
    return None


class _DeferredInterrupt:
    """Within a ``with`` block, Ctrl-C (SIGINT) and SIGTERM only *ask* to stop; :attr:`requested` says so.

    The training loop checks it between steps, so an interrupt never leaves a step half done: the
    step finishes, a checkpoint is written, and then ``KeyboardInterrupt`` (or ``SystemExit`` for
    SIGTERM) is raised. A second Ctrl-C stops at once (the last checkpoint on disk stays good).
    Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested: Optional[int] = None
        self.forced = False  # True once a second Ctrl-C has stopped the step at once
        self._old: Dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            self.forced = True
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = signum
        print("\ninterrupt: finishing the current step, then saving (Ctrl-C again stops at once)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):  # not supported here
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def raise_if_requested(self) -> None:
        if self.requested == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM)
        if self.requested is not None:
            raise KeyboardInterrupt


# ----------------------------------------------------------------------------- helpers


_WARNED_EMULATED_BF16 = False


def cuda_autocast_dtype(device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The precision ``amp="auto"`` trains in on this CUDA device, by its native tensor-core formats.

    Compute capability 8.0 and above (A100, RTX 30xx/40xx, H100, ...) has bf16 tensor cores: bf16.
    7.x (V100, T4, RTX 20xx) has fp16 tensor cores but no bf16 ones: fp16 (with a gradient scaler).
    ``torch.cuda.is_bf16_supported()`` is True there too, because bf16 can be *emulated*, much more
    slowly. Below 7.0 (Pascal and older) neither is native: fp32 (``None``). The capability read is
    that of ``device`` itself (``cuda:1`` may differ from the current device).
    """
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _minor = torch.cuda.get_device_capability(index)
    if major >= 8:
        return torch.bfloat16
    if major == 7:
        return torch.float16
    return None


def resolve_amp(amp: Union[str, bool, None], device: torch.device) -> Optional[torch.dtype]:
    """Turn an ``amp`` request into an autocast dtype (or None for full precision).

    ``None``/``False``/``"off"``: fp32. ``"auto"``: on CUDA by the device's native tensor-core
    formats (:func:`cuda_autocast_dtype`: bf16 from compute capability 8.0, fp16 on 7.x, else fp32); on the
    CPU bf16 only where this CPU computes it natively *and* a timed probe finds it faster
    (:func:`animlib.runtime.cpu_bf16_support`), else fp32; fp32 on MPS. ``"bf16"``: bf16 on any
    device; on a CPU without native bf16 it still runs, with a one-time warning that says how much
    slower it measured. ``"fp16"``: CUDA or MPS only.
    """
    global _WARNED_EMULATED_BF16
    if amp in (None, False, "off", "fp32", "none"):
        return None
    device = torch.device(device)
    if amp is True or amp == "auto":
        if device.type == "cuda":
            return cuda_autocast_dtype(device)
        if device.type == "cpu":
            return torch.bfloat16 if cpu_bf16_support().fast else None
        return None
    if amp in ("bf16", "bfloat16", torch.bfloat16):
        if device.type == "cpu" and not _WARNED_EMULATED_BF16:
            info = cpu_bf16_support()
            if not info.fast:
                _WARNED_EMULATED_BF16 = True
                warnings.warn(
                    f"amp='bf16' on this CPU: {info.reason} (a small convolution took "
                    f"{info.bf16_seconds * 1e3:.1f} ms in bf16 vs {info.fp32_seconds * 1e3:.1f} ms in fp32). "
                    "Training will run, but slower; use amp='auto' to let the library choose.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return torch.bfloat16
    if amp in ("fp16", "float16", "half", torch.float16):
        if device.type == "cpu":
            raise ValueError("amp='fp16' is not supported on the CPU; use amp='auto' (bf16 where this CPU "
                             "computes it natively, else fp32), 'bf16' or None.")
        return torch.float16
    raise ValueError(f"amp must be None, 'auto', 'bf16' or 'fp16', got {amp!r}")


def amp_label(amp: Union[str, bool, None], device: Union[str, torch.device]) -> str:
    """What ``amp`` resolves to on ``device``, as a name: ``"bf16"``, ``"fp16"`` or ``"fp32"``."""
    dtype = resolve_amp(amp, torch.device(device))
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside (nested) tuples, lists and dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """This rank's slice (along dim 0) of every tensor in ``batch``; other objects pass through."""
    if world_size <= 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            return batch
        if batch.shape[0] % world_size:
            raise ValueError(
                f"batch size {batch.shape[0]} is not divisible by the world size {world_size}; "
                "use a batch size that is a multiple of the number of processes."
            )
        return batch.tensor_split(world_size)[rank]
    if isinstance(batch, Mapping):
        return type(batch)({k: shard_batch(v, rank, world_size) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    return batch


def capture_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA RNG states, as tensors and ints (``weights_only``-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: Mapping[str, Any], path: Union[str, os.PathLike]) -> Path:
    """Write a checkpoint dict atomically (see :func:`atomic_torch_save`)."""
    return atomic_torch_save(dict(state), path)


def load_checkpoint(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs while loading)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise RuntimeError(f"could not load checkpoint {path}: {e}. Is it a file written by animlib?") from e


def _previous_of(path: Path) -> Path:
    """Where :meth:`Trainer.save` keeps the checkpoint before ``path`` (``last.pt`` -> ``last.previous.pt``)."""
    return path.with_name(path.stem + ".previous" + path.suffix)


def _first_line(error: BaseException, limit: int = 160) -> str:
    """An error's message, short: its first line, cut at ``limit`` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: Union[bool, str, None] = None) -> Optional[str]:
    """The ``torch.compile`` mode a :class:`Trainer` uses, or ``None`` for eager execution.

    ``value``: ``False``/``True``, a mode name, or ``None`` to read ``ANIMLIB_COMPILE`` from the
    environment (``""``/``"0"``: eager, ``"1"``: the default mode, else a mode name).
    """
    if value is None:
        env = os.environ.get("ANIMLIB_COMPILE", "").strip().lower()
        value = False if env in ("", "0", "false", "no") else (True if env in ("1", "true", "yes") else env)
    if value is False:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in _COMPILE_MODES:
        return value
    raise ValueError(f"compile must be True, False or one of {_COMPILE_MODES} (also in ANIMLIB_COMPILE), "
                     f"got {value!r}")


def _separate_compile_cache() -> None:
    """Keep torch.compile's on-disk cache apart per CPU kernel set.

    Inductor's cache key does not include ``ATEN_CPU_CAPABILITY``: kernels compiled under one
    setting (e.g. AVX-512) were reused under another (``avx2``, ``default``) and the compiled
    training step then returned losses of 1e31 on the same machine. Unless the user chose a cache
    folder (``TORCHINDUCTOR_CACHE_DIR``), each kernel set gets its own subfolder of the default one.
    """
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # an older torch: its layout differs, leave its cache alone
        return
    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # (importing torch._dynamo, which any optimiser does, writes the default folder into the variable)
    if chosen and os.path.abspath(chosen) != default:
        return
    capability = torch.backends.cpu.get_cpu_capability().lower()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(default, f"animlib-cpu-{capability}")


def _as_float(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean().item()) if v.numel() > 1 else float(v.detach().item())
    return float(v)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Run a step function for a number of steps, with everything a real training run needs.

    Parameters
    ----------
    models, optimizers:
        Dicts of named ``nn.Module`` s and optimisers (a single module / optimiser is named
        ``"model"``). Models may be empty (image optimisation keeps its pixels in ``extra``).
    step_fn:
        ``step_fn(trainer, batch) -> dict`` of scalar metrics; it calls :meth:`optimize` for each
        update it makes. The key ``loss_key`` (default ``"loss"``) is shown on the progress bar.
    schedulers:
        Dict of learning-rate schedulers keyed like the optimisers; each is stepped after its
        optimiser in :meth:`optimize`.
    device:
        ``"auto"`` (default), ``"cuda"``, ``"mps"``, ``"cpu"``; under ``torchrun`` with CUDA each
        rank takes ``cuda:LOCAL_RANK``.
    amp:
        ``None`` (fp32), ``"auto"``, ``"bf16"`` or ``"fp16"`` (see :func:`resolve_amp`).
    grad_clip:
        Max global gradient norm per optimiser (None = no clipping).
    checkpoint_dir, checkpoint_every:
        Where ``last.pt`` goes and how often (in steps; it is also written at the end of
        :meth:`fit` and when interrupted with Ctrl-C).
    extra:
        Named objects with ``state_dict()``/``load_state_dict()`` saved in checkpoints (a replay
        buffer, an image tensor wrapped in :class:`TensorState`, ...).
    shard_batches:
        Under DDP, split every batch along dim 0 so each rank sees its part (default True).
    sync_every:
        How often (in steps) the host reads the step's numbers: losses and metrics are checked for
        NaN/inf, logged and shown then. ``1`` checks every loss before its update touches a
        parameter. ``None`` (default): ``1`` on the CPU, where reading a value costs nothing, and
        ``25`` on CUDA and MPS, where each read makes the host wait for the device; a non-finite
        value is then found at the next read (with the step that produced it), and every
        checkpoint is still written only from checked, finite state.
    compile:
        Opt-in ``torch.compile`` of every trainable model: ``True`` (the default mode), a mode name
        (``"reduce-overhead"``, ``"max-autotune"``) or ``False``. ``None`` (default) reads the
        environment variable ``ANIMLIB_COMPILE`` (unset or ``0``: off; ``1``: on; else a mode), so a
        whole book build can opt in without code changes. The first steps are slower (compiling);
        checkpoints hold the plain modules' weights either way, so compiled and eager runs resume
        each other's checkpoints.
    """

    def __init__(
        self,
        models: Union[nn.Module, Mapping[str, nn.Module], None],
        optimizers: Union[torch.optim.Optimizer, Mapping[str, torch.optim.Optimizer]],
        step_fn: StepFn,
        *,
        schedulers: Optional[Mapping[str, Any]] = None,
        device: Union[str, torch.device, None] = "auto",
        amp: Union[str, bool, None] = None,
        grad_clip: Optional[float] = None,
        checkpoint_dir: Union[str, os.PathLike, None] = None,
        checkpoint_every: int = 0,
        extra: Optional[Mapping[str, Any]] = None,
        progress: bool = True,
        desc: str = "train",
        loss_key: str = "loss",
        log_every: int = 1,
        shard_batches: bool = True,
        compile: Union[bool, str, None] = None,
        sync_every: Optional[int] = None,
    ):
        if models is None:
            models = {}
        if isinstance(models, nn.Module):
            models = {"model": models}
        if isinstance(optimizers, torch.optim.Optimizer):
            optimizers = {"model": optimizers}
        if not callable(step_fn):
            raise TypeError("step_fn must be a callable step_fn(trainer, batch) -> dict of metrics")
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number (a maximal gradient norm) or None, got {grad_clip!r}")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be a number of steps >= 0 (0: only at the end), got {checkpoint_every!r}")
        if not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every must be a number of steps >= 1, got {log_every!r}")
        if sync_every is not None and (not isinstance(sync_every, int) or sync_every < 1):
            raise ValueError(f"sync_every must be a number of steps >= 1 or None, got {sync_every!r}")
        self._init_distributed()
        if self.world_size > 1 and torch.cuda.is_available() and (device in (None, "auto", "cuda")):
            device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(self.local_rank)
        self.device = get_device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.raw_models: Dict[str, nn.Module] = {k: m.to(self.device) for k, m in models.items()}
        self.models: Dict[str, nn.Module] = dict(self.raw_models)
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.models = {
                k: (nn.parallel.DistributedDataParallel(m, device_ids=ids)
                    if any(p.requires_grad for p in m.parameters()) else m)
                for k, m in self.raw_models.items()
            }
        self.compile_mode = compile_mode(compile)
        if self.compile_mode is not None:
            if self.device.type == "cpu":
                _separate_compile_cache()
            self.models = {k: (torch.compile(m, mode=None if self.compile_mode == "default" else self.compile_mode)
                               if any(p.requires_grad for p in m.parameters()) else m)
                           for k, m in self.models.items()}
        self.optimizers: Dict[str, torch.optim.Optimizer] = dict(optimizers)
        self.schedulers: Dict[str, Any] = dict(schedulers or {})
        unknown = set(self.schedulers) - set(self.optimizers)
        if unknown:
            raise ValueError(f"schedulers {sorted(unknown)} have no optimiser of the same name")
        use_scaler = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scalers = {k: torch.amp.GradScaler("cuda", enabled=use_scaler) for k in self.optimizers}
        self.step_fn = step_fn
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.extra: Dict[str, Any] = dict(extra or {})
        self.progress, self.desc, self.loss_key = progress, desc, loss_key
        self.log_every = max(1, int(log_every))
        self.sync_every = sync_every if sync_every is not None else (1 if self.device.type == "cpu" else 25)
        self._pending: List[Tuple[int, str, torch.Tensor]] = []  # (step, name, value) not yet read
        self._unread_records: List[Dict[str, Any]] = []  # history records still holding tensors
        self.shard_batches = shard_batches
        self.step = 0  # completed steps
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: List[Dict[str, float]] = []
        self.last_finite: Dict[str, float] = {}
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None
        self._previous_checkpoint_step: Optional[int] = None
        self._epoch_rng: Optional[Dict[str, Any]] = None
        self._iter: Optional[Iterator] = None
        # The step in progress (see _begin_step): where an interrupted step goes back to, and its updates.
        self._step_start: Optional[Dict[str, Any]] = None
        self._step_updates: Optional[List[str]] = None  # optimisers whose update finished in this step
        self._updating: Optional[str] = None  # the optimiser whose update is under way
        self._step_losses: Dict[str, Any] = {}
        self._step_out: Optional[Mapping[str, Any]] = None  # what step_fn returned, once it has
        self._last_step_updates: Optional[List[str]] = None  # the updates of the last complete step

    # -- distributed -------------------------------------------------------------------
    def _init_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and dist.is_available() and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self.rank == 0

    def unwrap(self, name: str = "model") -> nn.Module:
        """The plain module behind ``models[name]`` (without a DDP wrapper)."""
        return _unwrap(self.models[name])

    # -- the pieces a step function uses -------------------------------------------------
    def autocast(self):
        """Context manager: ``torch.autocast`` with this trainer's precision (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def check_finite(self, name: str, value: Any) -> Any:
        """Raise :class:`NonFiniteLossError` if ``value`` is NaN/inf, else return it as a float.

        With ``sync_every > 1`` a tensor is not read now: it is returned (detached) and checked at
        the next :meth:`sync`.
        """
        if self.sync_every > 1 and isinstance(value, torch.Tensor):
            value = value.detach()
            self._pending.append((self.step + 1, name, value))
            return value
        v = _as_float(value)
        if not math.isfinite(v):
            raise self._nonfinite(name, v)
        self.last_finite[name] = v
        return v

    def sync(self) -> None:
        """Read every value still on the device (one host synchronisation) and check it is finite;
        raises :class:`NonFiniteLossError` naming the first step that produced a NaN/inf."""
        pending, self._pending = self._pending, []
        if pending:
            try:
                values = torch.stack([v.float().mean() for _, _, v in pending]).tolist()
            except RuntimeError:  # values on different devices
                values = [_as_float(v) for _, _, v in pending]
            read = {}
            for (step, name, tensor), v in zip(pending, values):
                if not math.isfinite(v):
                    self._read_records(read)
                    raise self._nonfinite(name, v, step=step)
                if not name.startswith("gradient of "):  # (a gradient's max-abs, not a logged value)
                    self.last_finite[name] = v
                read[id(tensor)] = v
            self._read_records(read)

    def _read_records(self, read: Mapping[int, float]) -> None:
        """Put the host's numbers into the history records that still hold tensors."""
        for record in self._unread_records:
            for k, v in record.items():
                if isinstance(v, torch.Tensor):
                    record[k] = read[id(v)] if id(v) in read else _as_float(v)
        self._unread_records = []

    def _nonfinite(self, name: str, value: float, step: Optional[int] = None) -> NonFiniteLossError:
        """The error for a non-finite value in step ``step`` (default ``self.step + 1``), after making
        sure the checkpoint it names is good: a checkpoint of the state that step started from
        produced the bad value, so it is set aside (``last.nonfinite.pt``) and the one before it
        becomes ``last.pt`` again."""
        bad_step = self.step + 1 if step is None else step
        path, step, aside = self.last_checkpoint, self.last_checkpoint_step, None
        if path is not None and step == bad_step - 1 and self.is_main and path.exists():
            previous = _previous_of(path)
            aside = path.with_name(path.stem + ".nonfinite" + path.suffix)
            if previous.exists():
                atomic_copy(path, aside)  # (a link: the path is never without a checkpoint)
                os.replace(previous, path)
                step = self._previous_checkpoint_step
            else:
                os.replace(path, aside)
                path, step = None, None
            self.last_checkpoint, self.last_checkpoint_step = path, step
        return NonFiniteLossError(bad_step, name, value, self.last_finite.get(self.loss_key), path, step,
                                  set_aside=aside, checkpointing=self.checkpoint_dir is not None)

    def optimize(self, loss: torch.Tensor, name: str = "model", *, retain_graph: bool = False,
                 zero_grad: bool = True) -> Optional[float]:
        """One update of optimiser ``name`` from ``loss``; returns the gradient norm if clipping.

        Checks the loss is finite *before* touching any parameter, then: zero grads, (scaled)
        backward, unscale, clip, optimiser step, scaler update, scheduler step.
        """
        if name not in self.optimizers:
            raise KeyError(f"no optimiser named {name!r}; this trainer has {sorted(self.optimizers)}")
        loss_name = self.loss_key if name in ("model",) else f"{name}_loss"
        self._step_losses[loss_name] = self.check_finite(loss_name, loss)
        opt, scaler = self.optimizers[name], self.scalers[name]
        if zero_grad:
            opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(retain_graph=retain_graph)
        norm = None
        if self.grad_clip is not None:
            scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        if not scaler.is_enabled():  # (with fp16 the scaler itself skips steps with inf gradients)
            self._check_gradients(opt, name)
        self._updating = name  # from here until the end of the update the step is neither before nor after it
        scaler.step(opt)
        scaler.update()
        if name in self.schedulers:
            self.schedulers[name].step()
        self._updating = None
        if self._step_updates is not None:
            self._step_updates.append(name)
        return norm

    def _param_names(self) -> Dict[int, str]:
        return {id(p): f"{m}.{n}" for m, mod in self.raw_models.items() for n, p in mod.named_parameters()}

    def _check_gradients(self, opt: torch.optim.Optimizer, name: str) -> None:
        """Stop before the update if any gradient is NaN/inf (the parameters stay as they were)."""
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad.detach() for p in params]
        if hasattr(torch.nn.utils, "get_total_norm"):  # the max-abs norm: inf/NaN only for a non-finite entry
            biggest = torch.nn.utils.get_total_norm(grads, norm_type=float("inf"))
        else:  # torch < 2.6
            biggest = torch.stack([g.abs().amax() for g in grads]).amax()
        if self.sync_every > 1:  # read at the next sync (then without the parameter's name)
            self._pending.append((self.step + 1, f"gradient of {name}", biggest))
            return
        if bool(torch.isfinite(biggest)):
            return
        names = self._param_names()
        found = _first_nonfinite((names.get(id(p), f"{name} parameter {i}"), p.grad) for i, p in enumerate(params))
        raise self._nonfinite(f"gradient of {found[0]}", found[1])

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly (all ``weights_only``-loadable)."""
        return {
            "format": "animlib.engine/1",
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "models": {k: m.state_dict() for k, m in self.raw_models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "extra": {k: e.state_dict() for k, e in self.extra.items()},
            "rng": capture_rng_state(),
            "epoch_rng": self._epoch_rng,
            "history": self.history,
            "last_finite": self.last_finite,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != "animlib.engine/1":
            raise ValueError("not an animlib.engine checkpoint (missing format tag)")
        for key, mine in (("models", self.raw_models), ("optimizers", self.optimizers)):
            missing = set(mine) - set(state[key])
            if missing:
                raise KeyError(f"checkpoint has no {key} named {sorted(missing)}; it has {sorted(state[key])}")
        for k, m in self.raw_models.items():
            m.load_state_dict(state["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.scalers.items():
            if k in state["scalers"] and state["scalers"][k]:
                s.load_state_dict(state["scalers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        for k, e in self.extra.items():
            e.load_state_dict(state["extra"][k])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.history = list(state["history"])
        self.last_finite = dict(state["last_finite"])
        self._epoch_rng = state["epoch_rng"]
        restore_rng_state(state["rng"])

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.checkpoint_dir / "last.pt" if self.checkpoint_dir is not None else None

    def save(self, path: Union[str, os.PathLike, None] = None, *, wait: bool = True) -> Optional[Path]:
        """Write a checkpoint (rank 0 only) atomically; returns its path.

        When ``path`` holds this trainer's last checkpoint of an earlier step, that one is kept
        first as ``<name>.previous.pt`` by a copy (a hard link where the filesystem has them), never
        a rename; then the new state is written to a temporary file beside it and renamed over
        ``path``. So ``path`` holds a complete checkpoint at every instant, whenever the process is
        killed, and a full disk leaves it as it was.

        Under DDP every rank calls it and they wait for each other after the write; ``wait=False``
        writes without waiting (rank 0 alone, when the other ranks may not be saving).
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path: pass path= or create the Trainer with checkpoint_dir=")
        self.sync()  # only checked, finite state is written
        state = self.state_dict()
        bad = _first_nonfinite(
            [(f"{m}.{n}", t) for m, sd in state["models"].items() for n, t in sd.items()]
            + [(f"extra {k}.{n}", t) for k, sd in state["extra"].items() if isinstance(sd, Mapping)
               for n, t in sd.items()]
        )
        if bad is not None:  # never write a checkpoint that cannot train on; the last one stays good
            raise NonFiniteLossError(self.step, f"parameter {bad[0]}", bad[1], self.last_finite.get(self.loss_key),
                                     self.last_checkpoint, self.last_checkpoint_step)
        if self.is_main:
            if path.exists() and path == self.last_checkpoint and self.last_checkpoint_step != self.step:
                # Keep the one before: if the state just saved turns out to diverge on the next step,
                # the previous checkpoint is the last good one. (A copy, so that `path` stays in place;
                # and only when the step moved on: saving the same step again keeps the older one.)
                atomic_copy(path, _previous_of(path))
                self._previous_checkpoint_step = self.last_checkpoint_step
            atomic_torch_save(state, path)
        if self.world_size > 1 and wait:
            dist.barrier()
        self.last_checkpoint, self.last_checkpoint_step = path, self.step
        return path

    def resume(self, path: Union[str, os.PathLike, None] = None) -> bool:
        """Load the newest checkpoint that loads; True if one did, False if there is none.

        ``path`` defaults to ``checkpoint_dir/last.pt``. If it is missing or cannot be loaded
        (truncated, corrupt), the checkpoint kept before it (``last.previous.pt``) is tried, then,
        for the default path, every other checkpoint in the folder, newest first; a one-line
        message on stderr names the file resumed from and its step. If checkpoint files are there
        but none of them loads, ``RuntimeError`` names them (move them away, or do not resume, to
        start again from step 0). With no checkpoint at all, nothing is loaded and a one-line
        message says that training starts at step 0.
        """
        explicit = path is not None
        path = Path(path) if explicit else self.checkpoint_path
        if path is None:
            self._say("resume: no checkpoint_dir was given, so there is nothing to resume; starting at step 0")
            return False
        previous = _previous_of(path)
        candidates = [path, previous]
        if not explicit and path.parent.is_dir():  # any other checkpoint this trainer wrote there
            others = [p for p in path.parent.glob("*.pt") if p not in candidates and not p.name.startswith(".")
                      and not p.name.endswith(".nonfinite.pt")]
            candidates += sorted(others, key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)
        failed: List[Tuple[Path, str]] = []
        for candidate in (p for p in candidates if p.is_file()):
            try:
                state = load_checkpoint(candidate, map_location="cpu")
            except (RuntimeError, OSError) as e:
                failed.append((candidate, _first_line(e.__cause__ or e)))
                continue
            if isinstance(state, Mapping) and state.get("format") == "animlib.engine/1":
                break
            if candidate in (path, previous):
                failed.append((candidate, "not a checkpoint of animlib's Trainer (no format tag)"))
            # (any other file that loads without the tag is not a checkpoint: passed over)
        else:
            if failed:
                names = ", ".join(p.name for p, _ in failed)
                raise RuntimeError(
                    f"cannot resume: no checkpoint in {path.parent} can be loaded ("
                    + "; ".join(f"{p.name}: {why}" for p, why in failed)
                    + f"). To start again from step 0, move {names} out of the folder, or do not resume "
                    "(resume=False)."
                )
            self._say(f"resume: no checkpoint in {path.parent}; starting at step 0")
            return False
        self.load_state_dict(state)
        if candidate != path:
            why = [f"{p.name} could not be loaded ({reason})" for p, reason in failed]
            if not path.exists():
                why.insert(0, f"{path.name} is missing")
            self._say(f"resume: {', '.join(why)}; resuming from {candidate} (after step {self.step})")
        self.last_checkpoint, self.last_checkpoint_step = candidate, self.step
        self._iter = None  # rebuilt at the saved position on the next batch
        return True

    def _say(self, message: str) -> None:
        """One line on stderr, from rank 0 only."""
        if self.is_main:
            print(message, file=sys.stderr, flush=True)

    # -- a step cut short --------------------------------------------------------------------
    def _begin_step(self) -> None:
        """Start of a step: note what an interrupted step can go back to (when checkpoints are kept).

        The parameters need no copy: they only change in :meth:`optimize`, which records each update.
        The random number generators, the data position and the last finite values are noted here.
        """
        self._step_updates, self._updating, self._step_losses, self._step_out = [], None, {}, None
        if self.checkpoint_dir is None:  # nothing would be saved: no need to go back
            self._step_start = None
            return
        self._step_start = {
            "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
                    else None),
            "data": (self.epoch, self.batch_in_epoch, self._epoch_rng),
            "last_finite": dict(self.last_finite),
        }

    def _end_step(self) -> None:
        """The step is complete (counted): an interrupt from here on keeps it."""
        self._step_start, self._last_step_updates, self._step_updates = None, self._step_updates, None

    def _settle_interrupted_step(self, steps: int) -> Optional[str]:
        """After a ``KeyboardInterrupt`` inside a step, make the trainer's state one that resumes exactly.

        - The step had not yet changed any parameter (the interrupt came while fetching the batch or
          in the forward pass): it is undone. The random number generators, the data position and
          the last finite values go back to the start of the step, which is not counted.
        - The step's updates are all done: ``step_fn`` had returned, or it had finished the same
          updates as the step before (the same optimisers, in the same order). The step counts as
          done; its history record holds what ``step_fn`` returned or, when it did not return, the
          losses given to :meth:`optimize`. (Exact when ``step_fn`` changes no state after its last
          update, as every step of the library.)
        - Otherwise (between two updates of a step, inside an update, or after an update in the
          very first step of this trainer): the state is neither before nor after the step.
          Returns why, and the caller keeps the last checkpoint instead of writing this state.

        Returns None when the state may be saved. Does nothing when no step is in progress.
        """
        start, self._step_start = self._step_start, None
        if start is None:
            return None
        done = self._step_updates or []
        k = self.step + 1
        if self._updating is None and not done and self._step_out is None:
            py, npy, cpu, cuda = start["rng"]
            random.setstate(py)
            np.random.set_state(npy)
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            self.epoch, self.batch_in_epoch, self._epoch_rng = start["data"]
            self.last_finite = start["last_finite"]
            self._pending = [p for p in self._pending if p[0] <= self.step]
            self._iter = None  # rebuilt at the step's start on the next batch
            return None
        if self._step_out is not None or (self._updating is None and done == self._last_step_updates):
            record: Dict[str, Any] = {"step": k}
            if self._step_out is not None:
                for name, v in self._step_out.items():
                    record[name] = self.check_finite(name, v)
            else:
                record.update(self._step_losses)
            self.step = k
            self._end_step()
            if self.step % self.log_every == 0 or self.step == steps:
                self.history.append(record)
                if any(isinstance(v, torch.Tensor) for v in record.values()):
                    self._unread_records.append(record)
            return None
        where = f"inside the update of {self._updating!r}" if self._updating is not None else \
            f"after the update(s) of {done} but before the step function returned"
        return f"interrupted {where} in step {k}: that state is neither before nor after the step, so it is not saved"

    # -- data ------------------------------------------------------------------------------
    def _next_batch(self, data: Union[Iterable, Callable[[int], Any]]) -> Any:
        if callable(data) and not hasattr(data, "__iter__"):
            return data(self.step)
        if self._iter is None:
            # (Re)build the iterator exactly where the saved run was: replay the epoch's RNG, skip
            # the batches already consumed, then put the current RNG state back.
            if self._epoch_rng is not None and self.batch_in_epoch > 0:
                now = capture_rng_state()
                restore_rng_state(self._epoch_rng)
                self._iter = iter(data)
                for _ in range(self.batch_in_epoch):
                    next(self._iter)
                restore_rng_state(now)
            else:
                self._epoch_rng = capture_rng_state()
                self._iter = iter(data)
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._epoch_rng = capture_rng_state()
            self._iter = iter(data)
            try:
                batch = next(self._iter)
            except StopIteration:
                raise ValueError("the data source yielded no batches") from None
        self.batch_in_epoch += 1
        return batch

    # -- the loop --------------------------------------------------------------------------
    def fit(
        self,
        data: Union[Iterable, Callable[[int], Any]],
        steps: int,
        *,
        resume: bool = False,
        eval_fn: Optional[Callable[[Trainer], Mapping[str, Any]]] = None,
        eval_every: int = 0,
    ) -> List[Dict[str, float]]:
        """Train until ``steps`` steps have been completed in total; return the history.

        ``data`` is an iterable of batches (e.g. a ``DataLoader``; re-iterated each epoch) or a
        callable ``data(step) -> batch``. With ``resume=True`` the run continues from
        ``checkpoint_dir/last.pt`` when it exists (else from the newest checkpoint there that loads,
        see :meth:`resume`). ``eval_fn(trainer)`` runs every ``eval_every`` steps (and at the end)
        and its numbers are added to the history.

        A ``KeyboardInterrupt`` that does not come through the deferred Ctrl-C (raised by the step
        function or the data, or a Ctrl-C where the handler could not be set) still saves, when there is a
        ``checkpoint_dir``: a step interrupted before its first update is undone, and one whose
        updates are all done (the same optimisers as the step before) counts as done, so the
        checkpoint resumes exactly; a step interrupted between or inside its updates is in neither
        state and is not saved (the last checkpoint stays). A second Ctrl-C stops at once and keeps
        the last checkpoint.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if resume:
            self.resume()
        cap = work_cap()  # a rehearsal (ANIMLIB_CAP_STEPS / _SECONDS): the same run, fewer steps
        if cap.steps is not None:
            steps = min(steps, cap.steps)
        deadline = None if cap.seconds is None else time.perf_counter() + cap.seconds
        started, first_step = time.perf_counter(), self.step
        for m in self.raw_models.values():
            m.train()
        bar = tqdm(total=steps, initial=min(self.step, steps), desc=self.desc,
                   disable=not (self.progress and self.is_main), dynamic_ncols=True, leave=True,
                   mininterval=0.5)  # a few updates a second: little output traffic from a notebook
        interrupt = _DeferredInterrupt()
        try:
            interrupt.__enter__()
            while self.step < steps:
                if deadline is not None and self.step > first_step and time.perf_counter() > deadline:
                    break
                self._begin_step()
                batch = self._next_batch(data)
                if self.shard_batches:
                    batch = shard_batch(batch, self.rank, self.world_size)
                    if cap.items is not None:  # a rehearsal: the same shapes, a few examples a batch
                        batch = cap_batch(batch)
                batch = move_to_device(batch, self.device)
                out = self.step_fn(self, batch) or {}
                self._step_out = out
                record = {"step": self.step + 1}
                for k, v in out.items():
                    record[k] = self.check_finite(k, v)
                self.step += 1
                self._end_step()
                logged = self.step % self.log_every == 0 or self.step == steps
                if logged:
                    self.history.append(record)
                    if any(isinstance(v, torch.Tensor) for v in record.values()):
                        self._unread_records.append(record)  # filled in by the next sync
                evaluate = eval_fn is not None and eval_every and self.step % eval_every == 0
                if self._pending and (evaluate or self.step % self.sync_every == 0 or self.step == steps):
                    self.sync()
                if evaluate:
                    record.update({k: _as_float(v) for k, v in eval_fn(self).items()})
                    for m in self.raw_models.values():
                        m.train()
                if logged and self.loss_key in record and not isinstance(record[self.loss_key], torch.Tensor):
                    bar.set_postfix({self.loss_key: f"{record[self.loss_key]:.4g}"}, refresh=False)
                bar.update(1)
                if self.checkpoint_dir is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save()
                if interrupt.requested is not None:  # asked to stop: the step is complete, save it
                    if self.checkpoint_dir is not None and self.last_checkpoint_step != self.step:
                        self.save()
                    interrupt.raise_if_requested()
        except KeyboardInterrupt:
            # After a completed, saved step (above), or mid-step: a KeyboardInterrupt raised by the
            # step function or the data, or a Ctrl-C where no handler could be set. Then the state goes back
            # to the start of the step, or on to its end, and is saved; a state in between cannot
            # resume exactly and is not, and neither is anything after a second Ctrl-C (stop at once):
            # the last checkpoint on disk stays the good one.
            if not interrupt.forced:
                not_saved = self._settle_interrupted_step(steps)
                if not_saved is not None:
                    self._say(not_saved)
                elif self.checkpoint_dir is not None and self.last_checkpoint_step != self.step:
                    self.save(wait=False)  # (under DDP the other ranks may be elsewhere: rank 0 writes alone)
            if self.last_checkpoint is not None and self.is_main:
                print(f"stopped; resume from {self.last_checkpoint} (after step {self.last_checkpoint_step})",
                      file=sys.stderr, flush=True)
            raise
        finally:
            interrupt.__exit__(None, None, None)
            bar.close()
            self._read_records({})  # no tensors left in the history, however the loop ended
        if self._pending:
            self.sync()  # a loop cut short by ANIMLIB_CAP_SECONDS still checks every value
        self._log_fit(self.step - first_step, time.perf_counter() - started)
        if eval_fn is not None and not (eval_every and self.step % eval_every == 0) and self.history:
            self.history[-1].update({k: _as_float(v) for k, v in eval_fn(self).items()})
        if self.checkpoint_dir is not None:
            self.save()
        return self.history


    def _log_fit(self, steps: int, seconds: float) -> None:
        """Append this fit's speed to ``ANIMLIB_FIT_LOG`` (a JSON-lines file) when that is set.

        The GPU check and the rehearsal read it: steps per second, peak memory and precision of every
        training run of a chapter.
        """
        path = os.environ.get("ANIMLIB_FIT_LOG")
        if not path or not self.is_main:
            return
        record = {
            "desc": self.desc, "steps": steps, "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 3) if seconds > 0 else None,
            "device": str(self.device),
            "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype],
            "peak_gpu_mb": peak_memory_mb(self.device)["peak_gpu_mb"],
        }
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


class TensorState:
    """Wrap a tensor (e.g. the image that style transfer optimises) so checkpoints include it."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"tensor": self.tensor.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.tensor.copy_(state["tensor"].to(self.tensor.device))


__all__.append("TensorState")


@dataclass
class SupervisedStep:
    """The step for the common case: ``loss = loss_fn(model, batch)``, one update of ``models[name]``.

    Like every parametrised step in the library, it is a dataclass: its settings are typed fields
    and calling it with ``(trainer, batch)`` performs one step.
    """

    loss_fn: Callable[[nn.Module, Any], torch.Tensor]  # (model, batch) -> scalar loss
    name: str = "model"  # which of the trainer's models/optimisers to use

    def __call__(self, trainer: Trainer, batch: Any) -> Dict[str, torch.Tensor]:
        with trainer.autocast():
            loss = self.loss_fn(trainer.models[self.name], batch)
        trainer.optimize(loss.float(), self.name)
        return {"loss": loss.detach()}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    data: Union[Iterable, Callable[[int], Any]],
    steps: int,
    **trainer_kwargs: Any,
) -> Trainer:
    """Supervised training in one call; returns the :class:`Trainer` (``.history``, ``.save()``)."""
    resume = trainer_kwargs.pop("resume", False)
    trainer = Trainer({"model": model}, {"model": optimizer}, SupervisedStep(loss_fn), **trainer_kwargs)
    trainer.fit(data, steps, resume=resume)
    return trainer


@torch.no_grad()
def batched_inference(
    fn: Callable[[torch.Tensor], Any],
    inputs: torch.Tensor,
    batch_size: int,
    *,
    model: Optional[nn.Module] = None,
    device: Union[str, torch.device, None] = None,
    out_device: Union[str, torch.device] = "cpu",
) -> Any:
    """Apply ``fn`` to ``inputs`` in chunks of ``batch_size`` (along dim 0) and concatenate the results.

    No gradients are recorded. Each chunk is moved to ``device`` (default: the device of ``model``'s
    parameters, else the inputs' own); every result comes back as float32 on ``out_device``. When
    ``model`` is given it runs in evaluation mode and gets its previous mode back afterwards, also
    when ``fn`` raises. ``fn`` may return one tensor or a tuple of tensors (each is concatenated).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if inputs.shape[0] == 0:
        raise ValueError("batched_inference got no inputs (an empty first dimension)")
    if device is None:
        first = next(model.parameters(), None) if model is not None else None
        dev = first.device if first is not None else inputs.device
    else:
        dev = torch.device(device)
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    outs: List[Any] = []
    try:
        for chunk in inputs.split(batch_size):
            o = fn(chunk.to(dev))
            outs.append(tuple(v.float().to(out_device) for v in o) if isinstance(o, tuple) else o.float().to(out_device))
    finally:
        if model is not None:
            model.train(was_training)
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o[k] for o in outs]) for k in range(len(outs[0])))
    return torch.cat(outs)
