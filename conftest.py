"""Repository-wide pytest settings.

nbval (``make validate``) waits a fixed 5 s for each of a cell's output messages once the kernel has
replied that the cell finished. On a busy machine (two notebooks training side by side on two cores)
the output of a long cell, such as a training cell's progress-bar updates, can arrive later than that,
and the run fails by chance with "Timeout of 5 seconds exceeded waiting for output". Here that wait is
an option with a generous default, ``--nbval-output-timeout`` (or ``NBVAL_OUTPUT_TIMEOUT``), so the
check fails only when a kernel really stops answering. Every output is still compared.
"""

from __future__ import annotations

import os

DEFAULT_OUTPUT_TIMEOUT = 300.0  # seconds; a cell's own execution limit is nbval's --nbval-cell-timeout


def pytest_addoption(parser):
    parser.addoption(
        "--nbval-output-timeout", type=float,
        default=float(os.environ.get("NBVAL_OUTPUT_TIMEOUT", DEFAULT_OUTPUT_TIMEOUT)),
        help="seconds nbval waits for each output message of a finished cell (nbval's own default is 5; "
             f"here {DEFAULT_OUTPUT_TIMEOUT:g}, or NBVAL_OUTPUT_TIMEOUT)",
    )


def pytest_collection_modifyitems(config, items):
    timeout = config.getoption("--nbval-output-timeout")
    for item in items:
        # nbval's cell items keep the wait in ``output_timeout`` (set to 5 in their constructor).
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = timeout


def pytest_report_header(config):
    if config.getoption("nbval", default=False):
        return f"nbval: each output message of a finished cell is awaited up to {config.getoption('--nbval-output-timeout'):g} s"
    return None
