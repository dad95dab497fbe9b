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
  across ranks;
- callbacks (``callbacks={"on_step_end": every(100, keep_snapshot)}`` or
  :meth:`Trainer.add_callback`) for what watches a run without changing it: snapshots, logs.

A minimal use::

    def step(t, batch):
        x, y = batch
        with t.autocast():
            loss = F.cross_entropy(t.models["model"](x), y)
        t.optimize(loss, "model")
        return {"loss": loss}

    trainer = Trainer({"model": net}, {"model": torch.optim.Adam(net.parameters())}, step)
    history = trainer.fit(loader, steps=1000)

A method's step is a small dataclass with ``__call__(trainer, batch)`` (:class:`SupervisedStep` here;
``PixelStep``, ``ReenactStep`` and the others in their method modules), and every ``train_*``
function of the library returns its :class:`Trainer`.

After training, :func:`batched_inference` runs a model over many inputs the one way every method
module does: no gradients, evaluation mode, batches on the model's device, results collected on
the CPU.

The package: ``trainer`` (:class:`Trainer`, :func:`every`), ``steps`` (:class:`SupervisedStep`,
:func:`train_supervised`), ``checkpoints`` (atomic saves, RNG state, :class:`TensorState`),
``batches`` (device moves, DDP shards, :func:`batched_inference`), ``guards`` (the non-finite stop,
the deferred Ctrl-C) and ``compiling`` (opt-in ``torch.compile``). Import from ``animlib.engine``.
"""

from __future__ import annotations

from .batches import batched_inference, move_to_device, shard_batch
from .checkpoints import TensorState, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .compiling import compile_mode
from .guards import NonFiniteLossError
from .steps import SupervisedStep, train_supervised
from .trainer import Trainer, every

__all__ = [
    "Trainer",
    "every",
    "train_supervised",
    "SupervisedStep",
    "TensorState",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "move_to_device",
    "shard_batch",
    "batched_inference",
    "compile_mode",
]
