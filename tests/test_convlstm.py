"""Tests for animlib.convlstm: the peephole equations, nn.LSTMCell equivalence, shapes, recording."""

import pytest
import torch
from torch import nn

from animlib.convlstm import ConvLSTM, ConvLSTMCell, PeepholeLSTMCell, lstm_gates, record_gates

torch.set_num_threads(1)


def _hand_peephole_step(x, h, c, W, b, wci, wcf, wco):
    """Equations (1)-(6) written out gate by gate, as a reader would on paper (vector cell)."""
    H = h.shape[1]
    z = torch.cat([x, h], 1) @ W.T + b
    sig = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
    i = sig(z[:, :H] + wci * c)
    f = sig(z[:, H : 2 * H] + wcf * c)
    g = torch.tanh(z[:, 2 * H : 3 * H])
    c_new = f * c + i * g
    o = sig(z[:, 3 * H :] + wco * c_new)  # the output gate peeks at c_t
    return o * torch.tanh(c_new), c_new


def test_peephole_cell_matches_hand_computation():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(3, 4).double()
    with torch.no_grad():
        for p in (cell.w_ci, cell.w_cf, cell.w_co):
            p.normal_()
    x, h, c = torch.randn(2, 3).double(), torch.randn(2, 4).double(), torch.randn(2, 4).double()
    got = cell(x, (h, c))
    want = _hand_peephole_step(x, h, c, cell.gates.weight, cell.gates.bias, cell.w_ci, cell.w_cf, cell.w_co)
    torch.testing.assert_close(got, want)


def test_output_gate_uses_new_cell_state():
    # With only w_co non-zero, the result must change when c_{t-1} changes the NEW state c_t,
    # and equal the hand formula with c_t (not c_{t-1}).
    pre = torch.zeros(1, 4)
    c_prev = torch.tensor([[2.0]])
    w = torch.tensor([1.0])
    out = lstm_gates(pre, c_prev, torch.zeros(1), torch.zeros(1), w)
    c_t = 0.5 * 2.0 + 0.5 * 0.0  # f = i = sigmoid(0) = 0.5, g = tanh(0) = 0
    assert out["c"].item() == pytest.approx(c_t)
    assert out["o"].item() == pytest.approx(torch.sigmoid(torch.tensor(c_t)).item())


def test_conv_peephole_cell_matches_hand_computation_per_pixel():
    torch.manual_seed(1)
    cell = ConvLSTMCell(2, 3, kernel_size=1).double()
    with torch.no_grad():
        for p in (cell.w_ci, cell.w_cf, cell.w_co):
            p.normal_()
    x = torch.randn(1, 2, 4, 5).double()
    h, c = torch.randn(1, 3, 4, 5).double(), torch.randn(1, 3, 4, 5).double()
    got_h, got_c = cell(x, (h, c))
    W, b = cell.gates.weight[:, :, 0, 0], cell.gates.bias
    for yy, xx in [(0, 0), (3, 4), (2, 1)]:
        wh, wc = _hand_peephole_step(x[:, :, yy, xx], h[:, :, yy, xx], c[:, :, yy, xx], W, b,
                                     cell.w_ci[:, 0, 0], cell.w_cf[:, 0, 0], cell.w_co[:, 0, 0])
        torch.testing.assert_close(got_h[:, :, yy, xx], wh)
        torch.testing.assert_close(got_c[:, :, yy, xx], wc)


@pytest.mark.parametrize("bias", [True, False])
def test_vector_cell_equals_nn_lstmcell(bias):
    torch.manual_seed(2)
    ref = nn.LSTMCell(5, 7, bias=bias)
    cell = PeepholeLSTMCell(5, 7, peephole=False).load_lstm_cell(ref)
    x = torch.randn(3, 5)
    state = (torch.randn(3, 7), torch.randn(3, 7))
    for _ in range(4):  # several steps: the states stay equal
        h_ref, c_ref = ref(x, state)
        h, c = cell(x, state)
        torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=0)
        state = (h_ref, c_ref)


def test_convlstm_cell_k1_on_1x1_equals_nn_lstmcell():
    torch.manual_seed(3)
    ref = nn.LSTMCell(6, 8)
    cell = ConvLSTMCell(6, 8, kernel_size=1, peephole=False).load_lstm_cell(ref)
    x = torch.randn(4, 6)
    h0, c0 = torch.randn(4, 8), torch.randn(4, 8)
    h_ref, c_ref = ref(x, (h0, c0))
    h, c = cell(x[:, :, None, None], (h0[:, :, None, None], c0[:, :, None, None]))
    assert (h[:, :, 0, 0] - h_ref).abs().max() < 1e-6
    assert (c[:, :, 0, 0] - c_ref).abs().max() < 1e-6
    # zero state when state is None
    h_ref, _ = ref(x)
    h, _ = cell(x[:, :, None, None])
    assert (h[:, :, 0, 0] - h_ref).abs().max() < 1e-6


def test_load_lstm_cell_zeroes_peepholes_and_checks_sizes():
    ref = nn.LSTMCell(2, 3)
    cell = ConvLSTMCell(2, 3, kernel_size=1, peephole=True)
    with torch.no_grad():
        cell.w_ci.fill_(1.0)
    cell.load_lstm_cell(ref)
    assert cell.w_ci.abs().sum() == 0
    with pytest.raises(ValueError, match="kernel_size=1"):
        ConvLSTMCell(2, 3, kernel_size=3).load_lstm_cell(ref)
    with pytest.raises(ValueError, match="does not match"):
        ConvLSTMCell(2, 4, kernel_size=1).load_lstm_cell(ref)


@pytest.mark.parametrize("peephole", [True, False])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_conv_cell_shapes_and_gradients(peephole, kernel_size):
    cell = ConvLSTMCell(3, 4, kernel_size=kernel_size, peephole=peephole)
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 4, 6, 7)
    h2, c2 = cell(x, (h, c))
    (h2.sum() + c2.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in cell.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if peephole:
        assert cell.w_ci.grad.abs().sum() > 0 and cell.w_co.grad.abs().sum() > 0


def test_per_channel_peepholes_work_at_any_size():
    cell = ConvLSTMCell(2, 3)
    assert cell.w_ci.shape == (3, 1, 1)
    for size in [(4, 4), (9, 13)]:
        h, _ = cell(torch.randn(1, 2, *size))
        assert h.shape[-2:] == size


def test_full_shape_peepholes_have_the_hidden_state_shape():
    cell = ConvLSTMCell(2, 3, spatial_size=(5, 6))
    assert cell.w_ci.shape == cell.w_cf.shape == cell.w_co.shape == (3, 5, 6)
    with torch.no_grad():
        cell.w_co.normal_()
    h, c = cell(torch.randn(2, 2, 5, 6))
    h.sum().backward()
    assert cell.w_co.grad.shape == (3, 5, 6) and cell.w_co.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="spatial_size"):
        cell(torch.randn(1, 2, 4, 6))
    # a per-position peephole really differs by position: same input everywhere, different outputs
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.zero_()
        cell.w_co.copy_(torch.linspace(-3, 3, 90).reshape(3, 5, 6))
    h, _ = cell(torch.ones(1, 2, 5, 6), (torch.zeros(1, 3, 5, 6), torch.ones(1, 3, 5, 6)))
    assert h[0, 0].std() > 0.01


def test_bad_inputs_raise_clear_errors():
    cell = ConvLSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        cell(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell(3, 4, kernel_size=2)
    with pytest.raises(ValueError, match="state shape"):
        cell(torch.randn(1, 3, 4, 4), (torch.zeros(1, 4, 5, 5), torch.zeros(1, 4, 5, 5)))
    with pytest.raises(ValueError, match="PeepholeLSTMCell"):
        PeepholeLSTMCell(3, 4)(torch.randn(2, 5))


def test_record_gates_over_time():
    net = ConvLSTM(3, [4, 5], kernel_size=3)
    x = torch.randn(2, 6, 3, 8, 8)
    with record_gates(net.cells[0]) as rec:
        out, states = net(x)
    g = rec.stacked()
    assert out.shape == (2, 6, 5, 8, 8) and len(states) == 2
    assert g["i"].shape == (6, 2, 4, 8, 8) and set(g) == {"i", "f", "g", "o", "c", "h"}
    assert ((g["f"] > 0) & (g["f"] < 1)).all()
    # outside the context nothing is recorded any more
    net(x)
    assert len(rec) == 6
    with record_gates(net) as rec2:
        net(x)
    assert len(rec2) == 12  # both layers


def test_convlstm_step_equals_forward():
    torch.manual_seed(4)
    net = ConvLSTM(2, 3, num_layers=2)
    x = torch.randn(1, 4, 2, 5, 5)
    out, _ = net(x)
    states = None
    for t in range(4):
        h, states = net.step(x[:, t], states)
        torch.testing.assert_close(h, out[:, t])


# ----------------------------------------------------------------------------- chapter 1 exercises


def test_chapter1_exercise_checks_pass_and_fail(capsys):
    from animlib.exercises import ch01

    assert ch01.check_forget_gate(ch01.solution_forget_gate)
    assert not ch01.check_forget_gate(lambda *a: None)
    assert "Not solved yet" in capsys.readouterr().out
    no_peep = lambda x, h, c, Wx, Wh, w, b: torch.sigmoid(x @ Wx.T + h @ Wh.T + b)  # noqa: E731
    assert not ch01.check_forget_gate(no_peep)
    assert "peephole" in capsys.readouterr().out
    assert not ch01.check_forget_gate(lambda *a: 1 / 0)  # a raising attempt is reported, not raised

    assert ch01.check_motion_energy(ch01.solution_motion_energy)
    assert not ch01.check_motion_energy(lambda f, m: None)
    assert not ch01.check_motion_energy(lambda f, m: float(f.std(1).mean()))
    assert "inside the mask" in capsys.readouterr().out

    assert ch01.check_shift_kernel(ch01.solution_shift_kernel)
    assert not ch01.check_shift_kernel(lambda dx, dy, K: None)

    def wrong_sign(dx, dy, K):
        k = torch.zeros(K, K)
        k[K // 2 + dy, K // 2 + dx] = 1
        return k

    assert not ch01.check_shift_kernel(wrong_sign)
