"""The helpers every exercise checker shares: the learner's errors are reported, never raised."""

import torch

from animlib.exercises._common import call_learner, report_tensor, try_call, verdict


def _boom(*args):
    raise ZeroDivisionError("division by zero")


def test_try_call_and_call_learner_report_instead_of_raising(capsys):
    assert try_call(lambda a, b: a + b, 1, 2) == (3, None)
    out, err = try_call(_boom, 1)
    assert out is None and isinstance(err, ZeroDivisionError)
    assert call_learner(lambda: 5) == (True, 5)
    assert call_learner(_boom) == (False, None)
    assert call_learner(None) == (False, None)
    text = capsys.readouterr().out
    assert "Your function raised ZeroDivisionError: division by zero" in text and "Not solved yet" in text


def test_report_tensor_accepts_the_answer_and_rejects_the_natural_mistakes(capsys):
    want = torch.arange(6.0).view(2, 3)
    assert report_tensor(want.clone(), want, "hint")
    assert not report_tensor(want.T, want, "hint")  # transposed: wrong shape
    assert not report_tensor(want + 0.1, want, "hint")  # wrong values
    assert not report_tensor(want.tolist(), want, "hint")  # not a tensor
    assert not report_tensor(None, want, "hint")  # not solved
    assert not report_tensor(None, want, "hint", error=ValueError("bad"))
    text = capsys.readouterr().out
    assert text.count("Correct!") == 1 and "expected a tensor of shape (2, 3), got (3, 2)" in text
    assert "max error 0.1" in text and "your function raised ValueError: bad" in text
    assert verdict(True, "yes", "no") and not verdict(False, "yes", "no")
