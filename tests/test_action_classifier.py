"""Tests for animlib.action_classifier: shapes, learning on tiny clips, evaluation that never trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animlib.action_classifier import (
    ActionClassifier,
    chance_accuracy,
    classification_loss,
    classifier_accuracy,
    labelled_clip_batches,
    predict_actions,
    recognition_of_reconstructions,
    train_action_classifier,
)

torch.set_num_threads(1)


def _moving_bars(n: int, T: int = 6, S: int = 16, seed: int = 0):
    """Three classes of tiny clips: a bright bar moving down (0), moving up (1), or blinking in place (2).

    The classes survive a horizontal mirror (the training batches' augmentation) and only the time axis
    tells them apart: a single frame of each looks the same.
    """
    g = np.random.default_rng(seed)
    clips = np.full((n, T, 1, S, S), -0.6, dtype=np.float32) + g.normal(0, 0.05, (n, T, 1, S, S)).astype(np.float32)
    labels = np.arange(n) % 3
    for i in range(n):
        x0, y0, w = g.integers(0, S - 8), g.integers(0, S), g.integers(5, 8)
        for t in range(T):
            if labels[i] == 2:
                y, on = y0, t % 2 == 0
            else:
                y, on = (y0 + (t if labels[i] == 0 else -t)) % S, True
            if on:
                clips[i, t, 0, y, x0:x0 + w] = 0.9
    return torch.from_numpy(clips), torch.from_numpy(labels).long()


def test_shapes_and_any_clip_length():
    model = ActionClassifier(n_classes=5, channels=3, width=4)
    for T in (1, 4, 7):
        assert model(torch.randn(2, T, 3, 16, 16)).shape == (2, 5)
    assert predict_actions(model, torch.randn(3, 4, 3, 16, 16), batch_size=2).shape == (3,)
    with pytest.raises(ValueError, match="clips"):
        model(torch.randn(2, 4, 1, 16, 16))  # one channel, the model wants three
    with pytest.raises(ValueError, match="n_classes"):
        ActionClassifier(n_classes=1)


def test_batches_are_deterministic_labelled_windows():
    clips, labels = _moving_bars(10, T=8)
    data = labelled_clip_batches(clips, labels, batch_size=4, frames=5, seed=3)
    (x1, y1), (x2, y2) = data(7), data(7)
    assert x1.shape == (4, 5, 1, 16, 16) and y1.shape == (4,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    with pytest.raises(ValueError, match="labels"):
        labelled_clip_batches(clips, labels[:3])
    with pytest.raises(ValueError, match="frames"):
        labelled_clip_batches(clips, labels, frames=9)
    loss = classification_loss(ActionClassifier(3, width=4), data(0))
    assert loss.dim() == 0 and torch.isfinite(loss)



def test_labelled_batches_are_the_clip_batches_with_their_labels():
    from animlib.video_ae import clip_batches

    clips, labels = _moving_bars(10, T=8)
    for flip in (True, False):
        plain = clip_batches(clips, 4, 5, flip, seed=3)
        both = labelled_clip_batches(clips, labels, 4, 5, flip, seed=3)
        for step in (0, 7):
            x, _ = both(step)
            assert torch.equal(x, plain(step))
    numbered = torch.arange(10.0)[:, None, None, None, None].expand(10, 8, 1, 4, 4)  # clip i holds the value i
    x, y = labelled_clip_batches(numbered, labels, 6, 5, seed=3)(7)
    assert torch.equal(y, labels[x[:, 0, 0, 0, 0].long()])  # every clip comes with its own label


def test_training_builds_the_same_classifier_and_leaves_the_callers_rng_alone():
    clips, labels = _moving_bars(8, T=4)
    torch.manual_seed(5)
    expected = ActionClassifier(3, width=4).state_dict()
    kw = dict(width=4, batch_size=2, seed=5, lr=0.0, device="cpu", progress=False)  # lr 0: the weights stay put
    torch.manual_seed(1)
    a = train_action_classifier(clips, labels, 1, **kw)
    after_a = torch.random.get_rng_state()
    given = ActionClassifier(3, width=4)
    torch.manual_seed(1)
    b = train_action_classifier(clips, labels, 1, model=given, **kw)  # builds nothing
    assert torch.equal(torch.random.get_rng_state(), after_a)  # building the classifier drew nothing from it
    torch.rand(7)  # whatever ran before
    c = train_action_classifier(clips, labels, 1, **kw)
    for k, v in expected.items():
        assert torch.equal(a.models["model"].state_dict()[k], v), k
        assert torch.equal(c.models["model"].state_dict()[k], v), k
    del b

def test_the_classifier_learns_tiny_actions_far_above_chance():
    train_x, train_y = _moving_bars(96, seed=0)
    test_x, test_y = _moving_bars(48, seed=1)
    trainer = train_action_classifier(train_x, train_y, 150, batch_size=16, width=8, lr=5e-3, device="cpu",
                                      progress=False)
    acc = classifier_accuracy(trainer.models["model"], test_x, test_y)
    chance = chance_accuracy(train_y, test_y)
    assert chance == pytest.approx(1 / 3)
    assert acc > chance + 0.4, (acc, chance)  # typically 1.0
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_evaluation_never_trains_and_reports_the_ratio():
    train_x, train_y = _moving_bars(48, seed=0)
    test_x, test_y = _moving_bars(24, seed=1)
    clf = train_action_classifier(train_x, train_y, 20, batch_size=8, width=4, device="cpu",
                                  progress=False).models["model"]
    clf.train()  # evaluation must switch to eval mode itself and give the mode back
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    calls = []
    clf.register_forward_hook(lambda m, i, o: calls.append((m.training, torch.is_grad_enabled())))
    blurred = torch.nn.functional.avg_pool3d(test_x.transpose(1, 2), (1, 3, 3), 1, (0, 1, 1)).transpose(1, 2)
    out = recognition_of_reconstructions(clf, {"blurred": blurred, "same": test_x.clone()}, test_x, test_y)
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "evaluation changed the classifier"
    assert calls and all(c == (False, False) for c in calls), calls  # eval mode, no gradients
    assert clf.training  # and the mode is given back
    a_in = out["inputs"]["accuracy"]
    assert out["same"]["accuracy"] == a_in and out["same"]["ratio"] == pytest.approx(1.0)
    assert out["blurred"]["ratio"] == pytest.approx(out["blurred"]["accuracy"] / a_in)
    with pytest.raises(ValueError, match="shape"):
        recognition_of_reconstructions(clf, {"short": test_x[:, :3]}, test_x, test_y)


def test_training_sees_only_the_clips_it_is_given():
    """The classifier's batches come from the clips passed to it: reconstructions never enter training."""
    clips, labels = _moving_bars(12, T=6)
    seen = []
    data = labelled_clip_batches(clips, labels, batch_size=5, seed=0)
    for step in range(20):
        x, _ = data(step)
        seen.append(x)
    pool = {c.flatten().numpy().tobytes() for i in range(len(clips)) for c in (clips[i], clips[i].flip(-1))}
    assert all(x[j].flatten().numpy().tobytes() in pool for x in seen for j in range(len(x)))


def test_chance_and_bad_labels():
    assert chance_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 1, 0, 2])) == pytest.approx(0.5)
    clips, labels = _moving_bars(6)
    with pytest.raises(ValueError, match="labels must lie"):
        train_action_classifier(clips, labels, 1, n_classes=2, device="cpu", progress=False)
