"""Batches on their way to a model: to the device, split across DDP ranks, and inference in chunks."""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Union

import torch
from torch import nn

__all__ = ["move_to_device", "shard_batch", "batched_inference"]


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
