"""animlib.files: atomic writes keep the old file on any failure; hashes match hashlib."""

import hashlib
import pickle

import pytest
import torch

from animlib.files import atomic_target, atomic_torch_save, atomic_write_bytes, atomic_write_text, sha256_file


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    p = tmp_path / "blob.bin"
    data = bytes(range(256)) * 1000
    p.write_bytes(data)
    assert sha256_file(p, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_atomic_writes_replace_and_leave_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "record.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.bin", "c.pt", "record.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file(tmp_path, error):
    target = tmp_path / "clip.gif"
    target.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_target(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".gif"  # writers that pick a format by suffix
            tmp.write_bytes(b"half a new fi")
            raise error("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_torch_save_failure_keeps_the_old_checkpoint(tmp_path):
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_torch_save({"step": 2, "bad": lambda: None}, target)  # a lambda cannot be pickled
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
