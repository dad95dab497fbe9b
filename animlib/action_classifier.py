"""A small action classifier for clips, and how well it recognises a model's reconstructions.

A reconstruction can have a low mean squared error and still lose what matters: a blurred figure at
the right place with the right height scores well on the MSE, but an arm or a leg that is missing
makes a wave look like a walk. An independent judge measures this: a classifier trained on the
*input* clips only (never on reconstructions) labels held-out clips and the autoencoder's
reconstructions of the same clips. If the reconstructions keep the limbs, the classifier recognises
them about as often as the inputs; if they are blurred into a bar, its accuracy falls towards chance.

Contents: :class:`ActionClassifier` (2D convolutions per frame, 3D convolutions across frames, then
global pooling), :func:`labelled_clip_batches`, :func:`classification_loss`, :func:`train_action_classifier`
(through :class:`animlib.engine.Trainer` with :class:`animlib.engine.SupervisedStep`),
:func:`predict_actions`, :func:`classifier_accuracy`, :func:`chance_accuracy` and
:func:`recognition_of_reconstructions` (accuracy on inputs and on reconstructions, and their ratio).
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import norm_layer
from .engine import SupervisedStep, Trainer, batched_inference
from .runtime import seeded
from .video_ae import clip_batches

__all__ = [
    "ActionClassifier",
    "labelled_clip_batches",
    "classification_loss",
    "train_action_classifier",
    "predict_actions",
    "classifier_accuracy",
    "chance_accuracy",
    "recognition_of_reconstructions",
]


def _check_labelled(clips: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5:
        shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise ValueError(f"clips must be a tensor (N, T, C, H, W), got {shape}")
    labels = torch.as_tensor(labels).long().reshape(-1)
    if len(labels) != len(clips):
        raise ValueError(f"got {len(clips)} clips but {len(labels)} labels")
    if len(clips) == 0:
        raise ValueError("got no clips")
    return clips, labels


class ActionClassifier(nn.Module):
    """Clips ``(B, T, C, H, W)`` -> action logits ``(B, n_classes)``.

    Two 2D convolutions per frame (3 x 3, stride 2: the image shrinks four times, thin limbs are
    still seen at full resolution by the first), then two 3D convolutions whose kernels span three
    frames (the first halves the image, the second halves time), each followed by group
    normalisation and ReLU, then the mean over time and space and a linear layer. The 3D kernels let
    it use the motion as well as the poses; the global mean makes it indifferent to where the figure
    is. Any ``T`` works, and any image side.
    """

    def __init__(self, n_classes: int, channels: int = 1, width: int = 16, dropout: float = 0.2):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if channels < 1 or width < 1:
            raise ValueError(f"channels and width must be >= 1, got {channels} and {width}")
        self.n_classes, self.channels = int(n_classes), int(channels)
        w = int(width)

        def gn(c: int) -> nn.Module:
            return norm_layer("group", c)

        self.frame = nn.Sequential(  # per frame: (N, C, H, W) -> (N, 2w, H/4, W/4)
            nn.Conv2d(channels, w, 3, stride=2, padding=1, bias=False), gn(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), gn(2 * w), nn.ReLU(inplace=True))
        self.motion = nn.Sequential(  # over time: (B, 2w, T, H/4, W/4) -> (B, 4w, T/2, H/8, W/8)
            nn.Conv3d(2 * w, 4 * w, 3, stride=(1, 2, 2), padding=1, bias=False), gn(4 * w), nn.ReLU(inplace=True),
            nn.Conv3d(4 * w, 4 * w, 3, stride=(2, 1, 1), padding=1, bias=False), gn(4 * w), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.channels:
            raise ValueError(f"x must be clips (B, T, {self.channels}, H, W), got {tuple(x.shape)}")
        B, T = x.shape[:2]
        f = self.frame(x.flatten(0, 1))  # (B·T, 2w, h, w)
        f = f.view(B, T, *f.shape[1:]).transpose(1, 2)  # Conv3d wants (B, C, T, h, w)
        return self.head(self.motion(f).mean(dim=(2, 3, 4)))  # (B, n_classes)


def labelled_clip_batches(
    clips: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 32,
    frames: Optional[int] = None,
    flip: bool = True,
    seed: int = 0,
) -> Callable[[int], Tuple[torch.Tensor, torch.Tensor]]:
    """A ``data(step) -> (clips (B, frames, C, H, W), labels (B,))`` sampler.

    :func:`animlib.video_ae.clip_batches` with the labels checked and passed along: random clips, a
    random window of ``frames`` consecutive frames and, with ``flip``, a random horizontal mirror (an
    action mirrored is the same action); the draw depends only on ``(seed, step)``, and the clips
    drawn are the ones ``clip_batches`` draws for the same arguments.
    """
    clips, labels = _check_labelled(clips, labels)
    return clip_batches(clips, batch_size, frames, flip, seed, labels=labels)


def classification_loss(model: nn.Module, batch: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of ``model(clips)`` against the labels of a ``(clips, labels)`` batch."""
    x, y = batch
    return F.cross_entropy(model(x).float(), y)


def train_action_classifier(
    clips: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    n_classes: Optional[int] = None,
    model: Optional[nn.Module] = None,
    batch_size: int = 32,
    frames: Optional[int] = None,
    width: int = 16,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: Union[str, torch.device, None] = "auto",
    **trainer_kwargs,
) -> Trainer:
    """Train an :class:`ActionClassifier` on labelled clips ``(N, T, C, H, W)``; return the trainer.

    The classifier is ``trainer.models["model"]``. Training uses :func:`labelled_clip_batches`
    (windows of ``frames``, mirrors), AdamW with a one-cycle schedule (10 % warm-up, cosine decay) and
    :class:`animlib.engine.SupervisedStep` with :func:`classification_loss`. Pass only the clips the
    classifier may learn from (to judge reconstructions, the input clips of the training set).
    ``n_classes`` defaults to ``labels.max() + 1``; ``model`` replaces the default classifier.
    """
    clips, labels = _check_labelled(clips, labels)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {int(labels.min())}..{int(labels.max())}")
    if model is None:
        with seeded(seed):  # the same classifier for the same seed, whatever ran before
            model = ActionClassifier(max(2, n_classes), channels=clips.shape[2], width=width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1,
                                                anneal_strategy="cos", cycle_momentum=False)
    trainer_kwargs.setdefault("desc", "action classifier")
    trainer = Trainer({"model": model}, {"model": opt}, SupervisedStep(classification_loss), device=device,
                      schedulers={"model": sched}, **trainer_kwargs)
    trainer.fit(labelled_clip_batches(clips, labels, batch_size, frames, seed=seed), steps)
    return trainer


@torch.no_grad()
def predict_actions(model: nn.Module, clips: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The predicted label of every clip ``(N, T, C, H, W)``: ``(N,)`` int64, in eval mode, no gradients."""
    if clips.dim() != 5:
        raise ValueError(f"clips must be (N, T, C, H, W), got {tuple(clips.shape)}")
    return batched_inference(model, clips, batch_size, model=model).argmax(1)


def classifier_accuracy(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> float:
    """Share of clips whose predicted action equals the label (the model is not changed)."""
    clips, labels = _check_labelled(clips, labels)
    return float((predict_actions(model, clips, batch_size) == labels.cpu()).float().mean())


def chance_accuracy(train_labels: torch.Tensor, test_labels: torch.Tensor) -> float:
    """Accuracy of the best guess without looking at the clips: always the most frequent training label."""
    train_labels = torch.as_tensor(train_labels).long().reshape(-1)
    test_labels = torch.as_tensor(test_labels).long().reshape(-1)
    if len(train_labels) == 0 or len(test_labels) == 0:
        raise ValueError("need at least one training and one test label")
    guess = torch.bincount(train_labels).argmax()
    return float((test_labels == guess).float().mean())


@torch.no_grad()
def recognition_of_reconstructions(
    classifier: nn.Module,
    reconstructions: Mapping[str, torch.Tensor],
    clips: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 64,
) -> Dict[str, Dict[str, float]]:
    """How well a classifier trained on inputs recognises reconstructions of held-out ``clips``.

    ``reconstructions`` maps a model's name to its reconstructions of ``clips`` (same shape). Returns
    ``{"inputs": {"accuracy": a}, name: {"accuracy": a_name, "ratio": a_name / a}, ...}``: the ratio
    is 1 when the reconstructions are recognised as often as the inputs. Only evaluates: the classifier
    runs in eval mode without gradients and its weights are left as they were.
    """
    clips, labels = _check_labelled(clips, labels)
    acc_in = classifier_accuracy(classifier, clips, labels, batch_size)
    out: Dict[str, Dict[str, float]] = {"inputs": {"accuracy": acc_in}}
    for name, rec in reconstructions.items():
        if tuple(rec.shape) != tuple(clips.shape):
            raise ValueError(f"reconstructions[{name!r}] has shape {tuple(rec.shape)}, the clips {tuple(clips.shape)}")
        acc = classifier_accuracy(classifier, rec, labels, batch_size)
        out[name] = {"accuracy": acc, "ratio": acc / acc_in if acc_in > 0 else float("nan")}
    return out
