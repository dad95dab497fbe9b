"""Helpers the exercise checkers share: run the learner's code safely, report, compare tensors.

Every checker runs the learner's function through :func:`try_call` or :func:`call_learner`, so an
exception in the learner's code becomes a message and a ``False``, never a crashed notebook.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch


def try_call(fn: Callable, *args: Any) -> Tuple[Any, Optional[Exception]]:
    """Run the learner's ``fn``: ``(result, None)``, or ``(None, error)`` if it raised (never re-raises)."""
    try:
        return fn(*args), None
    except Exception as e:  # the learner's code: report it, do not crash the notebook
        return None, e


def raised(err: BaseException) -> str:
    """The sentence that reports an exception in the learner's code."""
    return f"your function raised {type(err).__name__}: {err}"


def report_raised(err: BaseException) -> bool:
    """Print :func:`raised` and return ``False``."""
    print(raised(err)[0].upper() + raised(err)[1:])
    return False


def call_learner(fn: Optional[Callable], *args: Any) -> Tuple[bool, Any]:
    """Run the learner's function; ``(False, None)`` with a message if it is missing or raises."""
    if fn is None:
        print("Not solved yet: define the function and pass it to the check.")
        return False, None
    out, err = try_call(fn, *args)
    if err is not None:
        return report_raised(err), None
    return True, out


def verdict(ok: bool, good: str, bad: str) -> bool:
    """Print the message that fits and return ``ok``."""
    print(good if ok else bad)
    return ok


def report_tensor(out: Any, expected: torch.Tensor, hint: str, error: Optional[BaseException] = None,
                  atol: float = 1e-5) -> bool:
    """Compare the learner's tensor with the expected one; print what is wrong (with ``hint``) or "Correct!"."""
    if error is not None:
        print(f"Not yet: {raised(error)}. Hint: {hint}")
        return False
    if out is None:
        print(f"Not solved yet. Hint: {hint}")
        return False
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        print(f"Not quite: expected a tensor of shape {tuple(expected.shape)}, got {shape}. Hint: {hint}")
        return False
    if not torch.allclose(out.float(), expected, atol=atol, rtol=1e-4):
        print(f"Not quite: the values differ (max error {float((out.float() - expected).abs().max()):.3g}). Hint: {hint}")
        return False
    print("Correct!")
    return True
