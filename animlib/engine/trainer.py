"""The :class:`Trainer`: one training loop for every method in the book (see :mod:`animlib.engine`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..files import atomic_copy, atomic_torch_save
from ..precision import resolve_amp
from ..rehearsal import cap_batch
from ..runtime import get_device, peak_memory_mb, work_cap
from .batches import move_to_device, shard_batch
from .checkpoints import capture_rng_state, load_checkpoint, previous_of, restore_rng_state
from .compiling import compile_mode, separate_compile_cache
from .guards import DeferredInterrupt, NonFiniteLossError, first_line, first_nonfinite

__all__ = ["Trainer", "StepFn", "every"]

StepFn = Callable[["Trainer", Any], Mapping[str, Any]]
Callback = Callable[["Trainer"], None]

#: The moments a callback can run at (see :meth:`Trainer.add_callback`).
EVENTS = ("on_fit_start", "on_step_end", "on_fit_end")


def every(n: int, fn: Callback) -> Callback:
    """``fn`` run only after every ``n``-th step (for ``on_step_end``): ``every(100, keep_snapshot)``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"every(n, fn) needs a number of steps n >= 1, got {n!r}")

    def at_multiples(trainer: Trainer) -> None:
        if trainer.step % n == 0:
            fn(trainer)

    return at_multiples



def unwrap_model(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def as_float(v: Any) -> float:
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
        callbacks: Optional[Mapping[str, Union[Callback, Iterable[Callback]]]] = None,
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
                separate_compile_cache()
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
        self.seconds = 0.0  # wall time spent in fit(), all calls together
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
        self.callbacks: Dict[str, List[Callback]] = {event: [] for event in EVENTS}
        for event, fns in (callbacks or {}).items():
            for fn in ([fns] if callable(fns) else list(fns)):
                self.add_callback(event, fn)

    # -- callbacks ---------------------------------------------------------------------------
    def add_callback(self, event: str, fn: Callback) -> None:
        """Run ``fn(trainer)`` at ``event``: ``"on_fit_start"``, ``"on_step_end"`` or ``"on_fit_end"``."""
        if event not in self.callbacks:
            raise ValueError(f"unknown callback event {event!r}; the events are {', '.join(EVENTS)}")
        if not callable(fn):
            raise TypeError(f"a callback must be a function fn(trainer), got {type(fn).__name__}")
        self.callbacks[event].append(fn)

    def _trigger(self, event: str) -> None:
        fns = self.callbacks[event]
        for fn in fns:
            fn(self)
        if fns and event != "on_fit_end":  # the loop goes on in training mode
            for m in self.raw_models.values():
                m.train()

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
        return unwrap_model(self.models[name])

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
        v = as_float(value)
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
                values = [as_float(v) for _, _, v in pending]
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
                    record[k] = read[id(v)] if id(v) in read else as_float(v)
        self._unread_records = []

    def _nonfinite(self, name: str, value: float, step: Optional[int] = None) -> NonFiniteLossError:
        """The error for a non-finite value in step ``step`` (default ``self.step + 1``), after making
        sure the checkpoint it names is good: a checkpoint of the state that step started from
        produced the bad value, so it is set aside (``last.nonfinite.pt``) and the one before it
        becomes ``last.pt`` again."""
        bad_step = self.step + 1 if step is None else step
        path, step, aside = self.last_checkpoint, self.last_checkpoint_step, None
        if path is not None and step == bad_step - 1 and self.is_main and path.exists():
            previous = previous_of(path)
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
        found = first_nonfinite((names.get(id(p), f"{name} parameter {i}"), p.grad) for i, p in enumerate(params))
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
        bad = first_nonfinite(
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
                atomic_copy(path, previous_of(path))
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
        previous = previous_of(path)
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
                failed.append((candidate, first_line(e.__cause__ or e)))
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

    def _one_step(self, data: Union[Iterable, Callable[[int], Any]], steps: int, capped: bool,
                  eval_fn: Optional[Callable[[Trainer], Mapping[str, Any]]], eval_every: int
                  ) -> Tuple[Dict[str, Any], bool]:
        """One step of :meth:`fit`: the batch, ``step_fn``, the record, the sync, evaluation and callbacks.

        Returns the step's record and whether it went into the history.
        """
        self._begin_step()
        batch = self._next_batch(data)
        if self.shard_batches:
            batch = shard_batch(batch, self.rank, self.world_size)
            if capped:  # a rehearsal: the same shapes, a few examples a batch
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
            record.update({k: as_float(v) for k, v in eval_fn(self).items()})
            for m in self.raw_models.values():
                m.train()
        self._trigger("on_step_end")
        return record, logged

    def _stopped(self, interrupt: DeferredInterrupt, steps: int) -> None:
        """A ``KeyboardInterrupt`` ended :meth:`fit`: save what resumes exactly, and say where from.

        After a completed, saved step, or mid-step: a ``KeyboardInterrupt`` raised by the step
        function or the data, or a Ctrl-C where no handler could be set. Then the state goes back to
        the start of the step, or on to its end, and is saved; a state in between cannot resume
        exactly and is not, and neither is anything after a second Ctrl-C (stop at once): the last
        checkpoint on disk stays the good one.
        """
        if not interrupt.forced:
            not_saved = self._settle_interrupted_step(steps)
            if not_saved is not None:
                self._say(not_saved)
            elif self.checkpoint_dir is not None and self.last_checkpoint_step != self.step:
                self.save(wait=False)  # (under DDP the other ranks may be elsewhere: rank 0 writes alone)
        if self.last_checkpoint is not None and self.is_main:
            print(f"stopped; resume from {self.last_checkpoint} (after step {self.last_checkpoint_step})",
                  file=sys.stderr, flush=True)

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
        and its numbers are added to the history: it measures. What only watches the run (snapshots,
        logs) is a callback instead (``callbacks=`` / :meth:`add_callback`).

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
        self._trigger("on_fit_start")
        bar = tqdm(total=steps, initial=min(self.step, steps), desc=self.desc,
                   disable=not (self.progress and self.is_main), dynamic_ncols=True, leave=True,
                   mininterval=0.5)  # a few updates a second: little output traffic from a notebook
        interrupt = DeferredInterrupt()
        try:
            interrupt.__enter__()
            while self.step < steps:
                if deadline is not None and self.step > first_step and time.perf_counter() > deadline:
                    break
                record, logged = self._one_step(data, steps, cap.items is not None, eval_fn, eval_every)
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
            self._stopped(interrupt, steps)
            raise
        finally:
            interrupt.__exit__(None, None, None)
            bar.close()
            self._read_records({})  # no tensors left in the history, however the loop ended
        if self._pending:
            self.sync()  # a loop cut short by ANIMLIB_CAP_SECONDS still checks every value
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self._log_fit(self.step - first_step, elapsed)
        if eval_fn is not None and not (eval_every and self.step % eval_every == 0) and self.history:
            self.history[-1].update({k: as_float(v) for k, v in eval_fn(self).items()})
        self._trigger("on_fit_end")
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
