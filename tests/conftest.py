"""Shared test settings: one CPU thread per test process (tiny ops run far slower with two
threads on a busy 2-core machine; `make test` also runs two test processes side by side)."""

import torch

torch.set_num_threads(1)
