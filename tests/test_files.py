"""animlib.files: atomic writes keep the old file on any failure (a full disk too), with the permissions of
an ordinary file; hashes match hashlib."""

import errno
import hashlib
import io
import os
import pickle
import stat

import pytest
import torch

from animlib.files import (
    atomic_copy,
    atomic_target,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    sha256_file,
)


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


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_files_get_the_permissions_of_an_ordinary_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        atomic_torch_save({"step": 1}, tmp_path / "c.pt")
        atomic_copy(tmp_path / "c.pt", tmp_path / "d.pt")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() gives under this umask
            f.write("x")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert _mode(tmp_path / "plain.txt") == want
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {n: want for n in ("a.json", "b.bin", "c.pt", "d.pt",
                                                                                 "plain.txt")}


def test_atomic_copy_links_when_it_can_and_copies_when_it_cannot(tmp_path, monkeypatch):
    src = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, src)
    atomic_copy(src, tmp_path / "linked.pt")
    assert os.path.samefile(src, tmp_path / "linked.pt")  # a hard link: no data copied

    def no_links(*a, **k):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    atomic_copy(src, tmp_path / "copied.pt")
    assert not os.path.samefile(src, tmp_path / "copied.pt")
    assert torch.load(tmp_path / "copied.pt", weights_only=True) == {"step": 1} == torch.load(src, weights_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied.pt", "last.pt", "linked.pt"]


def test_a_disk_full_in_the_middle_of_a_file_keeps_the_old_one(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(OSError, match=r"disk full\? could not write .*metrics\.json") as info:
        with atomic_target(target) as tmp, open(tmp, "wb") as f:
            f.write(b"half of the new")
            f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_torch_save_on_a_full_disk_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    """torch's zip writer turns the file's OSError(ENOSPC) into a RuntimeError; it is turned back."""
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)
    real_save = torch.save

    class FullDisk(io.RawIOBase):  # accepts a few bytes, then the disk is full
        def __init__(self, f):
            self.f, self.left = f, 100

        def writable(self):
            return True

        def write(self, b):
            if self.left <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = min(len(b), self.left)
            self.f.write(bytes(b[:n]))
            self.left -= n
            return n

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, FullDisk(f), *a, **k))
    with pytest.raises(OSError, match=r"disk full\? could not write .*last\.pt") as info:
        atomic_torch_save({"step": 2, "w": torch.zeros(10_000)}, target)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
