"""Helpers the exercise checkers share."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple


def call_learner(fn: Optional[Callable], *args: Any) -> Tuple[bool, Any]:
    """Run the learner's function; ``(False, None)`` with a message if it is missing or raises."""
    if fn is None:
        print("Not solved yet: define the function and pass it to the check.")
        return False, None
    try:
        return True, fn(*args)
    except Exception as e:  # the learner's code: explain, never crash the notebook
        print(f"Your function raised {type(e).__name__}: {e}")
        return False, None


def verdict(ok: bool, good: str, bad: str) -> bool:
    """Print the message that fits and return ``ok``."""
    print(good if ok else bad)
    return ok
