"""LSTM cells with peephole connections, in vector and convolutional form.

Source S0 (E. Klembara, "Generovanie cinemagrafov pomocou hlbokých rekurentných Q-sietí", TU Košice)
generates cinemagraphs with "a convolutional network
with an LSTM layer" and gives the three gate equations of the peephole LSTM (Gers et al. 2000;
Graves 2013). The book writes σ for the logistic sigmoid where the source writes δ (the source uses
δ for the discount factor too):

.. math::

    i_t &= σ(W_{xi} * x_t + W_{hi} * h_{t-1} + W_{ci} ∘ c_{t-1} + b_i)      \\qquad (1)\\\\
    f_t &= σ(W_{xf} * x_t + W_{hf} * h_{t-1} + W_{cf} ∘ c_{t-1} + b_f)      \\qquad (2)\\\\
    g_t &= \\tanh(W_{xg} * x_t + W_{hg} * h_{t-1} + b_g)                     \\qquad (3)\\\\
    c_t &= f_t ∘ c_{t-1} + i_t ∘ g_t                                         \\qquad (4)\\\\
    o_t &= σ(W_{xo} * x_t + W_{ho} * h_{t-1} + W_{co} ∘ c_t + b_o)          \\qquad (5)\\\\
    h_t &= o_t ∘ \\tanh(c_t)                                                  \\qquad (6)

(1), (2), (5) are the source's; (3), (4), (6) are the standard cell and hidden updates that it
leaves implicit. Note that the output gate peeks at the *new* cell state ``c_t``. ``*`` is a matrix
product in :class:`PeepholeLSTMCell` and a convolution in :class:`ConvLSTMCell` (Shi et al. 2015);
``∘`` is the element-wise (Hadamard) product with the peephole weights ``W_c·``.

Implementation choices, each tested in ``tests/test_convlstm.py``:

- The four pre-activations come from ONE fused linear map (or convolution) over ``cat([x, h])``
  producing ``4 * hidden`` channels in PyTorch's gate order ``(i, f, g, o)``. With peepholes off,
  :class:`PeepholeLSTMCell` is exactly ``torch.nn.LSTMCell`` and so is :class:`ConvLSTMCell` with
  ``kernel_size=1`` on 1×1 inputs, given the same weights (:meth:`ConvLSTMCell.load_lstm_cell`).
- Peephole weights are per channel and broadcast over space by default (``(C, 1, 1)``: works at any
  image size). The source says the peephole tensors "have the same size as the hidden state"; pass
  ``spatial_size=(H, W)`` for that reading (``(C, H, W)``; inputs must then be ``H × W``).
- Peephole weights start at zero (the cell starts as a plain LSTM) and the forget-gate bias at
  ``forget_bias`` (1 by default, Gers et al. 2000), so early training does not forget everything.
- :func:`record_gates` records ``i, f, g, o, c, h`` at every step for plots.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "GATE_NAMES",
    "GateRecorder",
    "record_gates",
    "lstm_gates",
    "PeepholeLSTMCell",
    "ConvLSTMCell",
    "ConvLSTM",
]

#: The gate order of the fused weight (the same as PyTorch's) is input, forget, candidate, output.
GATE_NAMES = ("i", "f", "g", "o")

State = Tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- helpers


class GateRecorder:
    """Collects the gate activations of one or more cells while it is active.

    ``rec.gates[name]`` is a list with one detached tensor per time step for each name in
    ``("i", "f", "g", "o", "c", "h")``; :meth:`stacked` stacks them along a new time axis 0.
    """

    def __init__(self) -> None:
        self.gates: Dict[str, List[torch.Tensor]] = {k: [] for k in ("i", "f", "g", "o", "c", "h")}

    def add(self, values: Dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.gates[k].append(v.detach().float().cpu())

    def __len__(self) -> int:
        return len(self.gates["i"])

    def stacked(self) -> Dict[str, torch.Tensor]:
        """``{name: (T, *shape)}`` tensors (empty dict if nothing was recorded)."""
        if not len(self):
            return {}
        return {k: torch.stack(v) for k, v in self.gates.items()}


@contextlib.contextmanager
def record_gates(*cells: nn.Module) -> Iterator[GateRecorder]:
    """Context manager: record every step of the given cells (or of every cell inside a module).

    Example::

        with record_gates(model) as rec:
            model(x)
        gates = rec.stacked()   # {"i": (T, B, C, H, W), ...}
    """
    rec = GateRecorder()
    targets = []
    for m in cells:
        targets.extend(sub for sub in m.modules() if isinstance(sub, (PeepholeLSTMCell, ConvLSTMCell)))
    if not targets:
        raise ValueError("record_gates found no PeepholeLSTMCell or ConvLSTMCell in the given modules")
    for t in targets:
        t._recorders.append(rec)
    try:
        yield rec
    finally:
        for t in targets:
            t._recorders.remove(rec)


def lstm_gates(
    pre: torch.Tensor,
    c_prev: torch.Tensor,
    w_ci: Optional[torch.Tensor],
    w_cf: Optional[torch.Tensor],
    w_co: Optional[torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """Equations (1)-(6) from the fused pre-activations ``pre`` (channels ``4C`` in order i, f, g, o).

    ``pre`` holds ``W_x· * x_t + W_h· * h_{t-1} + b_·`` for the four gates, concatenated on dim 1;
    ``w_c·`` are the peephole weights (None for a plain LSTM), broadcastable to ``c_prev``.
    Returns the dict ``{"i", "f", "g", "o", "c", "h"}``.
    """
    a_i, a_f, a_g, a_o = pre.chunk(4, dim=1)  # each like c_prev: (B, C) or (B, C, H, W)
    if w_ci is not None:
        a_i = a_i + w_ci * c_prev  # peephole on c_{t-1}, eq. (1)
        a_f = a_f + w_cf * c_prev  # eq. (2)
    i = torch.sigmoid(a_i)
    f = torch.sigmoid(a_f)
    g = torch.tanh(a_g)  # eq. (3)
    c = f * c_prev + i * g  # eq. (4)
    if w_co is not None:
        a_o = a_o + w_co * c  # the output gate peeks at the NEW cell state c_t, eq. (5)
    o = torch.sigmoid(a_o)
    h = o * torch.tanh(c)  # eq. (6)
    return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def _check_frame_dtype(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Refuse integer frames, and float64 frames for a float32 cell, before the convolution does."""
    if x.is_floating_point():
        if x.dtype != torch.float64 or weight.dtype == torch.float64:
            return  # float32/bfloat16/float16 (under autocast or for a cell of that dtype), or a .double() cell
        fix = "convert with x.float() (or build the cell in float64 with cell.double())"
    else:
        fix = "convert with x.float() / 255" if x.dtype == torch.uint8 else "convert with x.float()"
    raise TypeError(f"ConvLSTMCell expected float frames in [0, 1] (float32/bfloat16/float16); "
                    f"got {str(x.dtype).removeprefix('torch.')}: {fix}")


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# ----------------------------------------------------------------------------- cells


class PeepholeLSTMCell(nn.Module):
    """The vector LSTM cell of equations (1)-(6): the teaching cell of chapter 1.

    ``forward(x, state=None) -> (h, c)`` for ``x`` of shape ``(B, input_size)``; ``state`` is
    ``(h, c)``, each ``(B, hidden_size)``, zeros when None. With ``peephole=False`` this is
    numerically ``torch.nn.LSTMCell`` given the same weights (see :meth:`load_lstm_cell`).
    """

    def __init__(self, input_size: int, hidden_size: int, peephole: bool = True, forget_bias: float = 1.0):
        super().__init__()
        self.input_size = _check_positive("input_size", input_size)
        self.hidden_size = _check_positive("hidden_size", hidden_size)
        self.peephole = bool(peephole)
        # One fused map over cat([x, h]): rows [0:H] = i, [H:2H] = f, [2H:3H] = g, [3H:4H] = o.
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        with torch.no_grad():
            self.gates.bias[hidden_size : 2 * hidden_size].fill_(forget_bias)
        if self.peephole:
            self.w_ci = nn.Parameter(torch.zeros(hidden_size))
            self.w_cf = nn.Parameter(torch.zeros(hidden_size))
            self.w_co = nn.Parameter(torch.zeros(hidden_size))
        else:
            self.register_parameter("w_ci", None)
            self.register_parameter("w_cf", None)
            self.register_parameter("w_co", None)
        self._recorders: List[GateRecorder] = []

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        z = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        """One step of equations (1)-(6): ``x`` (B, input_size) -> ``(h, c)``, each (B, hidden_size)."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"PeepholeLSTMCell expects x of shape (B, {self.input_size}), got {tuple(x.shape)}; "
                "for images use ConvLSTMCell"
            )
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        h_prev, c_prev = state  # (B, H), (B, H)
        if tuple(h_prev.shape) != (x.shape[0], self.hidden_size) or tuple(c_prev.shape) != tuple(h_prev.shape):
            raise ValueError(f"state (h, c) must be two ({x.shape[0]}, {self.hidden_size}) tensors for this input, got "
                             f"{tuple(h_prev.shape)} and {tuple(c_prev.shape)}")
        pre = self.gates(torch.cat([x, h_prev], dim=1))  # (B, 4H)
        out = lstm_gates(pre, c_prev, self.w_ci, self.w_cf, self.w_co)
        for rec in self._recorders:
            rec.add(out)
        return out["h"], out["c"]

    @torch.no_grad()
    def load_lstm_cell(self, cell: nn.LSTMCell) -> PeepholeLSTMCell:
        """Copy the weights of a ``torch.nn.LSTMCell`` (same sizes); peepholes are set to zero."""
        if (cell.input_size, cell.hidden_size) != (self.input_size, self.hidden_size):
            raise ValueError(
                f"nn.LSTMCell({cell.input_size}, {cell.hidden_size}) does not match "
                f"PeepholeLSTMCell({self.input_size}, {self.hidden_size})"
            )
        self.gates.weight.copy_(torch.cat([cell.weight_ih, cell.weight_hh], dim=1))
        bias = torch.zeros(4 * self.hidden_size)
        if cell.bias:
            bias = cell.bias_ih + cell.bias_hh
        self.gates.bias.copy_(bias)
        if self.peephole:
            for w in (self.w_ci, self.w_cf, self.w_co):
                w.zero_()
        return self


class ConvLSTMCell(nn.Module):
    """Convolutional peephole LSTM cell (Shi et al. 2015) with the source's equations (1)-(6).

    Parameters
    ----------
    in_channels : int
        Channels of the input ``x_t``.
    hidden_channels : int
        Channels of the states ``h_t`` and ``c_t``.
    kernel_size : int
        Odd kernel of the fused gate convolution ("same" padding keeps the size).
    peephole : bool
        Use the Hadamard peephole terms ``W_c · c``.
    spatial_size : tuple of int, optional
        None (default) gives per-channel peephole weights of shape (C, 1, 1), broadcast over
        space, so the cell runs at any image size. (H, W) gives full (C, H, W) peephole tensors,
        the shape of the hidden state as the source describes; inputs must then be H × W.
    forget_bias : float
        Initial forget-gate bias.

    Notes
    -----
    ``forward(x, state=None)`` returns ``(h, c)``: ``x`` is (B, in_channels, H, W), ``h`` and
    ``c`` are (B, hidden_channels, H, W); the state is zeros when ``state`` is None.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        peephole: bool = True,
        spatial_size: Optional[Tuple[int, int]] = None,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        self.in_channels = _check_positive("in_channels", in_channels)
        self.hidden_channels = _check_positive("hidden_channels", hidden_channels)
        _check_positive("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that 'same' padding keeps the size, got {kernel_size}")
        self.kernel_size = kernel_size
        self.peephole = bool(peephole)
        if spatial_size is not None:
            if len(spatial_size) != 2 or any(int(s) < 1 for s in spatial_size):
                raise ValueError(f"spatial_size must be (H, W) with positive ints, got {spatial_size!r}")
            spatial_size = (int(spatial_size[0]), int(spatial_size[1]))
        self.spatial_size = spatial_size
        # The fused convolution: W_x· and W_h· for all four gates in one kernel over cat([x, h]).
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        with torch.no_grad():
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(forget_bias)
        if self.peephole:
            shape = (hidden_channels, *(spatial_size or (1, 1)))
            self.w_ci = nn.Parameter(torch.zeros(shape))  # (C, 1, 1) or (C, H, W)
            self.w_cf = nn.Parameter(torch.zeros(shape))
            self.w_co = nn.Parameter(torch.zeros(shape))
        else:
            self.register_parameter("w_ci", None)
            self.register_parameter("w_cf", None)
            self.register_parameter("w_co", None)
        self._recorders: List[GateRecorder] = []

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
                f"peephole={self.peephole}, spatial_size={self.spatial_size}")

    def init_state(self, x: torch.Tensor) -> State:
        """Zero ``(h, c)`` matching ``x``'s batch, size, device and dtype."""
        B, _, H, W = x.shape
        z = torch.zeros(B, self.hidden_channels, H, W, device=x.device, dtype=x.dtype)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        """One step of equations (1)-(6): ``x`` (B, C_in, H, W) -> ``(h, c)``, each (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvLSTMCell expects x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        _check_frame_dtype(x, self.gates.weight)
        if self.spatial_size is not None and tuple(x.shape[-2:]) != self.spatial_size:
            raise ValueError(
                f"this cell has full-shape peepholes for spatial_size={self.spatial_size} but got an input of "
                f"size {tuple(x.shape[-2:])}; resize the input or build the cell with spatial_size=None "
                "(per-channel peepholes work at any size)"
            )
        if state is None:
            state = self.init_state(x)
        h_prev, c_prev = state  # (B, C, H, W) each
        if (h_prev.shape[-2:] != x.shape[-2:] or h_prev.shape[1] != self.hidden_channels
                or h_prev.shape[0] != x.shape[0] or c_prev.shape != h_prev.shape):
            raise ValueError(
                f"state shape {tuple(h_prev.shape)} does not fit input {tuple(x.shape)} "
                f"(expected (B, {self.hidden_channels}, {x.shape[-2]}, {x.shape[-1]}))"
            )
        pre = self.gates(torch.cat([x, h_prev.to(x.dtype)], dim=1))  # (B, 4C, H, W)
        out = lstm_gates(pre, c_prev, self.w_ci, self.w_cf, self.w_co)
        for rec in self._recorders:
            rec.add(out)
        return out["h"], out["c"]

    @torch.no_grad()
    def load_lstm_cell(self, cell: nn.LSTMCell) -> ConvLSTMCell:
        """Copy a ``torch.nn.LSTMCell``'s weights into this cell (needs ``kernel_size=1``).

        On 1×1 inputs the cell then computes exactly what ``cell`` computes (with peepholes zeroed).
        """
        if self.kernel_size != 1:
            raise ValueError("only a kernel_size=1 ConvLSTMCell is equivalent to nn.LSTMCell")
        if (cell.input_size, cell.hidden_size) != (self.in_channels, self.hidden_channels):
            raise ValueError(
                f"nn.LSTMCell({cell.input_size}, {cell.hidden_size}) does not match "
                f"ConvLSTMCell({self.in_channels}, {self.hidden_channels})"
            )
        w = torch.cat([cell.weight_ih, cell.weight_hh], dim=1)  # (4C, in + C)
        self.gates.weight.copy_(w[:, :, None, None])
        self.gates.bias.copy_(cell.bias_ih + cell.bias_hh if cell.bias else torch.zeros(4 * self.hidden_channels))
        if self.peephole:
            for p in (self.w_ci, self.w_cf, self.w_co):
                p.zero_()
        return self


# ----------------------------------------------------------------------------- model


class ConvLSTM(nn.Module):
    """A stack of :class:`ConvLSTMCell` layers; layer ``k`` reads the hidden state of layer ``k-1``.

    ``forward(x, state=None) -> (outputs, states)`` for a sequence ``x`` of shape
    ``(B, T, C, H, W)``: ``outputs`` is the last layer's ``h`` at every step ``(B, T, C_last, H, W)``
    and ``states`` the final ``[(h, c), ...]`` per layer. :meth:`step` advances one time step, for
    models that feed their own outputs back (as the cinemagraph generator does).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: Union[int, Sequence[int]],
        num_layers: int = 1,
        kernel_size: int = 3,
        peephole: bool = True,
        spatial_size: Optional[Tuple[int, int]] = None,
    ):
        super().__init__()
        if isinstance(hidden_channels, int):
            hidden_channels = [hidden_channels] * _check_positive("num_layers", num_layers)
        hidden_channels = list(hidden_channels)
        if not hidden_channels:
            raise ValueError("ConvLSTM needs at least one layer")
        self.hidden_channels = hidden_channels
        ins = [in_channels] + hidden_channels[:-1]
        self.cells = nn.ModuleList(
            ConvLSTMCell(i, h, kernel_size, peephole, spatial_size) for i, h in zip(ins, hidden_channels)
        )

    def step(self, x: torch.Tensor, states: Optional[List[State]] = None) -> Tuple[torch.Tensor, List[State]]:
        """One time step through every layer: ``x`` ``(B, C, H, W)`` -> (top ``h``, new states)."""
        if states is None:
            states = [None] * len(self.cells)
        if len(states) != len(self.cells):
            raise ValueError(f"got {len(states)} layer states for a {len(self.cells)}-layer ConvLSTM")
        new = []
        for cell, st in zip(self.cells, states):
            h, c = cell(x, st)
            new.append((h, c))
            x = h
        return x, new

    def forward(self, x: torch.Tensor, state: Optional[List[State]] = None) -> Tuple[torch.Tensor, List[State]]:
        """Run the whole sequence ``x`` (B, T, C, H, W); returns (top-layer outputs, final states)."""
        if x.dim() != 5:
            raise ValueError(f"ConvLSTM expects a sequence (B, T, C, H, W), got shape {tuple(x.shape)}")
        outs = []
        for t in range(x.shape[1]):
            h, state = self.step(x[:, t], state)
            outs.append(h)
        return torch.stack(outs, dim=1), state  # (B, T, C_last, H, W)
