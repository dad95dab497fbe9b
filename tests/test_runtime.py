"""animlib.runtime: profiles, the chapter record and the CPU facts it carries."""

from __future__ import annotations

import json

import pytest
import torch

from animlib.runtime import check_profile, cpu_bf16_support, precision_provenance, start_chapter


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
