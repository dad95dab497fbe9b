"""The supervised step, and supervised training in one call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Union

import torch
from torch import nn

from .trainer import Trainer

__all__ = ["SupervisedStep", "train_supervised"]


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


def train_supervised(
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
