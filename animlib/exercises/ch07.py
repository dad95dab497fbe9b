"""Self-checks for chapter 7 (GRU autoencoders for video): a GRU step, AUC by counting, a 3D-conv autoencoder.

Each ``check_*`` takes the learner's function (or model), prints a verdict with a hint and returns
True/False. An unsolved exercise (a function that returns None) prints what to do and returns False.
The worked solutions (``solution_*``) are the ones the book shows; the tests check that they pass and
that wrong answers fail.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._common import try_call

__all__ = [
    "check_gru_step",
    "check_auc_by_counting",
    "check_conv3d_autoencoder",
    "solution_gru_step",
    "solution_auc_by_counting",
    "solution_conv3d_autoencoder",
]



# ----------------------------------------------------------------------------------------------
# Exercise 1: one GRU step from a torch.nn.GRUCell's parameters
# ----------------------------------------------------------------------------------------------
def solution_gru_step(x: torch.Tensor, h: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    """Worked solution: the GRU equations with PyTorch's gate order (r, u, n)."""
    gi = x @ cell.weight_ih.T + cell.bias_ih
    gh = h @ cell.weight_hh.T + cell.bias_hh
    i_r, i_u, i_n = gi.chunk(3, dim=1)
    h_r, h_u, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    u = torch.sigmoid(i_u + h_u)
    n = torch.tanh(i_n + r * h_n)
    return (1 - u) * n + u * h


def check_gru_step(fn: Callable[[torch.Tensor, torch.Tensor, nn.GRUCell], Optional[torch.Tensor]]) -> bool:
    """Compare ``fn(x, h, cell)`` with ``cell(x, h)`` on random inputs."""
    g = torch.Generator().manual_seed(7)
    cell = nn.GRUCell(5, 6)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    x, h = torch.randn(4, 5, generator=g), torch.randn(4, 6, generator=g)
    out, err = try_call(fn, x, h, cell)
    if err is not None:
        print(f"Your function raised {type(err).__name__}: {err}")
        return False
    if out is None:
        print("Not solved yet: return h_t of shape (B, hidden). Hint: split x @ W_ih.T + b_ih and "
              "h @ W_hh.T + b_hh into three chunks (r, u, n), in that order.")
        return False
    with torch.no_grad():
        ref = cell(x, h)
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        print(f"Not quite: expected a tensor of shape {tuple(ref.shape)}, got "
              f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}.")
        return False
    if torch.allclose(out, ref, atol=1e-5):
        print("Correct! Your GRU step matches torch.nn.GRUCell.")
        return True
    print("Not quite. Check (1) the gate order r, u, n in the stacked weights, (2) that r multiplies "
          "(W_hn h + b_hn), after the matrix product, and (3) h_t = (1 - u) * n + u * h_{t-1}.")
    return False


# ----------------------------------------------------------------------------------------------
# Exercise 2: the AUC by counting pairs
# ----------------------------------------------------------------------------------------------
def solution_auc_by_counting(normal, anomalous) -> float:
    """Worked solution: the share of (anomalous, normal) pairs in which the anomaly scores higher."""
    n = np.asarray(normal, dtype=float)[None, :]
    a = np.asarray(anomalous, dtype=float)[:, None]
    return float(((a > n) + 0.5 * (a == n)).mean())


def check_auc_by_counting(fn: Callable) -> bool:
    """Compare ``fn(normal_scores, anomalous_scores)`` with ``sklearn.metrics.roc_auc_score``."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    cases = [
        (rng.normal(0, 1, 40), rng.normal(1, 1, 25)),
        (np.round(rng.normal(0, 1, 30), 1), np.round(rng.normal(0.3, 1, 30), 1)),  # many ties
        (np.array([0.1, 0.2]), np.array([0.15, 0.3])),
    ]
    for normal, anomalous in cases:
        out, err = try_call(fn, normal, anomalous)
        if err is not None:
            print(f"Your function raised {type(err).__name__}: {err}")
            return False
        if out is None:
            print("Not solved yet: return a float in [0, 1]. Hint: compare every anomalous score with "
                  "every normal score (broadcasting), count wins as 1 and ties as 1/2, take the mean.")
            return False
        ref = roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], np.r_[normal, anomalous])
        if not np.isclose(float(out), ref, atol=1e-9):
            hint = " Ties must count one half." if len(np.intersect1d(normal, anomalous)) else ""
            print(f"Not quite: expected {ref:.4f}, got {float(out):.4f}.{hint}")
            return False
    print("Correct! The AUC is the probability that an anomaly outranks a normal clip.")
    return True


# ----------------------------------------------------------------------------------------------
# Exercise 3: a spatio-temporal (3D-convolution) autoencoder
# ----------------------------------------------------------------------------------------------
class _Conv3dAE(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv3d(1, width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.ReLU(),
            nn.Conv3d(width, 2 * width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.ReLU(),
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose3d(2 * width, width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.ReLU(),
            nn.ConvTranspose3d(width, 1, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.transpose(1, 2)  # (B, T, C, H, W) -> (B, C, T, H, W), the layout Conv3d expects
        return self.dec(self.enc(v)).transpose(1, 2)  # back to (B, T, C, H, W)


def solution_conv3d_autoencoder(width: int = 16) -> nn.Module:
    """Worked solution: two 3D convs that halve H and W (not T), mirrored by transposed 3D convs."""
    return _Conv3dAE(width)


def check_conv3d_autoencoder(model: Optional[nn.Module]) -> bool:
    """``model`` maps clips ``(B, 8, 1, 32, 32)`` to the same shape with 3D convolutions that mix time."""
    if model is None:
        print("Not solved yet: return an nn.Module built from nn.Conv3d layers. Hint: Conv3d wants "
              "(B, C, T, H, W), so transpose the clip's T and C axes on the way in and out.")
        return False
    if not isinstance(model, nn.Module) or not any(isinstance(m, nn.Conv3d) for m in model.modules()):
        print("Not quite: the model should be an nn.Module that uses at least one nn.Conv3d.")
        return False
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 8, 1, 32, 32, generator=g) * 2 - 1
    model.eval()
    with torch.no_grad():
        y, err = try_call(model, x)
        if err is not None:
            print(f"Your model raised {type(err).__name__}: {err}")
            return False
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            print(f"Not quite: the output must have the input's shape {tuple(x.shape)}, got {got}.")
            return False
        x2 = x.clone()
        x2[:, 4] = -x2[:, 4]
        y2, err = try_call(model, x2)
        other, _ = try_call(model, torch.rand(2, 8, 1, 32, 32, generator=g) * 2 - 1)
    if err is not None or not isinstance(y2, torch.Tensor) or not isinstance(other, torch.Tensor):
        print("Not quite: your model failed on a second batch of clips" + (f" ({type(err).__name__}: {err})" if err else "."))
        return False
    if float(y.std()) < 1e-4 or float((other - y).abs().max()) < 1e-6:
        print("Not quite: the output is the same for every clip (all zeros, or a constant), so it cannot "
              "reconstruct anything. The decoder's output must come from the encoder's code of the clip.")
        return False
    if (y2[:, 3] - y[:, 3]).abs().max() == 0 and (y2[:, 5] - y[:, 5]).abs().max() == 0:
        print("Not quite: changing frame 4 did not change frames 3 or 5 of the output, so the model does "
              "not mix time. Use a temporal kernel size > 1, e.g. (3, 4, 4).")
        return False
    mse, constant, err = _reconstruction_after_training(model)
    if err is not None:
        print(f"Not quite: training a copy of your model raised {type(err).__name__}: {err}")
        return False
    if not mse < 0.5 * constant:
        print(f"Not quite: after {LEARN_STEPS} training steps on stick-figure clips in [-1, 1], your autoencoder's "
              f"error is {mse:.3f}, not below half the error of the best constant output ({constant:.3f}): it "
              "does not learn to reconstruct. Check the output's range: the clips are in [-1, 1], so end with tanh "
              "(or nothing), not a sigmoid or ReLU; and check that nothing scales the output down.")
        return False
    print(f"Correct! A spatio-temporal autoencoder: every output frame sees its neighbours in time, and after "
          f"{LEARN_STEPS} training steps it reconstructs the clips with error {mse:.3f} (the best constant: "
          f"{constant:.3f}).")
    return True


#: Adam steps the check trains a copy of the learner's autoencoder for (about 3 s on a laptop CPU).
LEARN_STEPS = 60


def _reconstruction_after_training(model: nn.Module) -> Tuple[float, float, Optional[Exception]]:
    """Train a copy of ``model`` for :data:`LEARN_STEPS` Adam steps on 16 stick-figure clips in
    [-1, 1]; return its reconstruction MSE on them, the MSE of the best constant output (the clips'
    mean), and the error if training raised. The learner's model and RNG are left untouched."""
    from ..data.actions import make_action_clips

    x = make_action_clips(16, frames=8, size=32, seed=7, value_range=(-1, 1)).clips
    constant = float((x - x.mean()).pow(2).mean())
    try:
        m = copy.deepcopy(model).train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            opt = torch.optim.Adam(m.parameters(), lr=2e-3)
            for _ in range(LEARN_STEPS):
                batch = x[torch.randint(0, len(x), (8,))]
                loss = F.mse_loss(m(batch), batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
        m.eval()
        with torch.no_grad():
            return float(F.mse_loss(m(x), x)), constant, None
    except Exception as e:  # the learner's code: report it, do not crash the notebook
        return float("nan"), constant, e
