"""animlib.runtime: profiles, the chapter record and the CPU facts it carries."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from animlib.precision import cpu_bf16_support, precision_provenance
from animlib.runtime import check_profile, start_chapter


def test_profiles_are_checked():
    assert check_profile("quick") == "quick" and check_profile("full") == "full"
    with pytest.raises(ValueError, match="quick"):
        check_profile("fast")


def test_metrics_record_the_cpu_facts_that_decide_precision(tmp_path):
    run = start_chapter("t", profile="quick", device="cpu", out_dir=tmp_path)
    cpu_bf16_support()  # what amp="auto" consults; its result goes into metrics.json
    record = run.write_metrics({"x": torch.tensor(1.5)})
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(record)) and stored["x"] == 1.5
    assert stored["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(stored["cpu_bf16"]) == {"native", "fast", "speedup"}
    assert precision_provenance()["cpu_bf16"]["fast"] == cpu_bf16_support().fast


def test_capability_follows_the_environment(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision_provenance()["onednn_max_cpu_isa"] == "AVX2"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert precision_provenance()["onednn_max_cpu_isa"] is None


def test_devices_resolve_or_say_what_is_missing(monkeypatch):
    from animlib.runtime import get_device

    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device("auto").type in ("cpu", "mps") and get_device(None) == get_device("auto")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda:1")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        get_device("mps")


def test_seed_everything_repeats_every_generator():
    import random

    from animlib.runtime import seed_everything

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    g = seed_everything(7)
    first, gen_first = draw(), float(torch.rand((), generator=g))
    g = seed_everything(7)
    assert draw() == first and float(torch.rand((), generator=g)) == gen_first
    seed_everything(8)
    assert draw() != first
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_start_chapter_checks_its_parameters_and_records_weights(tmp_path):
    with pytest.raises(ValueError, match="profile must be one of"):
        start_chapter("t", profile="medium", device="cpu", out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="data_scripts"):
        start_chapter("t", device="cpu", out_dir=tmp_path, data_root=tmp_path / "nowhere")
    run = start_chapter("t", device="cpu", out_dir=tmp_path / "out", data_root=tmp_path)
    assert run.out_dir.is_dir() and run.data_root == tmp_path and run.path("a.gif") == tmp_path / "out" / "a.gif"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    assert run.record_weights("w", weights) == hashlib.sha256(b"weights").hexdigest()
    assert run.record_weights("h", "ab" * 32) == "ab" * 32  # a digest is kept as it is
    record = run.write_metrics({"n": np.int64(3)})
    assert record["n"] == 3 and record["pretrained_weights_sha256"]["w"] == hashlib.sha256(b"weights").hexdigest()
    assert record["profile"] == "quick" and record["chapter"] == "t" and record["seconds"] >= 0


def test_glue_hands_markdown_to_myst_nb_and_works_without_it(tmp_path, monkeypatch):
    import sys

    run = start_chapter("t", device="cpu", out_dir=tmp_path)
    shown = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: shown.append((name, obj, display)))
    assert run.glue("verdict", "sharper than **noise**") is None  # (no output in the notebook)
    (name, obj, display), = shown
    assert name == "verdict" and display is False and obj._repr_markdown_() == "sharper than **noise**"
    with pytest.raises(TypeError, match="str"):
        run.glue("n", 0.5)
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # a Colab session without the book's tools
    run.glue("verdict", "text")  # does nothing, raises nothing
