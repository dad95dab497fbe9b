"""Tests for animlib.data.download and the data scripts' command lines.

Every network test talks to a small HTTP server on 127.0.0.1 (ephemeral port, run in a thread) whose
handler implements byte ranges itself, so resume, restart and idempotency can be observed from the
server's side. Archives are generated in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List

import pytest

from animlib.data.download import (
    EXTRACTED_MARKER,
    RECORDED_NOT_PUBLISHED,
    ChecksumError,
    DownloadError,
    Manifest,
    OfflineError,
    UnsafeArchiveError,
    download,
    extract_archive,
    fetch,
)
from animlib.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["voxceleb.py", "kitti_depth.py", "nyu_depth_v2.py", "diw.py", "weizmann.py", "imdb_wiki.py"]


# --------------------------------------------------------------------------------------------------
# A local HTTP server with Range support
# --------------------------------------------------------------------------------------------------


class FileServer:
    """Serves ``files`` (path -> bytes); records every request as (path, Range header, status, bytes sent)."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.requests: List[Dict[str, object]] = []
        self.support_range = True
        self.drop_after: int | None = None  # next full answer stops after this many bytes
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                data = server.files.get(self.path)
                rng = self.headers.get("Range")
                record: Dict[str, object] = {"path": self.path, "range": rng}
                server.requests.append(record)
                if data is None:
                    record["status"] = 404
                    self.send_error(404)
                    return
                start = 0
                if rng and server.support_range:
                    assert rng.startswith("bytes=") and rng.endswith("-"), rng
                    start = int(rng[len("bytes="):-1])
                    if start >= len(data):
                        record["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    record["status"] = 206
                else:
                    self.send_response(200)
                    record["status"] = 200
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_after is not None:  # the connection breaks mid-transfer
                    body, server.drop_after = body[: server.drop_after], None
                    self.close_connection = True
                record["sent"] = len(body)
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 8)) % 251 for i in range(n))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------------


def test_good_download_verifies(server, tmp_path):
    data = payload()
    server.files["/d/file.bin"] = data
    dest = tmp_path / "out" / "file.bin"
    got = download(server.url("/d/file.bin"), dest, sha256=sha(data), progress=False)
    assert got == dest and dest.read_bytes() == data
    assert not dest.with_name("file.bin.part").exists()
    assert [r["status"] for r in server.requests] == [200]


def test_checksum_mismatch_raises_and_leaves_no_final_file(server, tmp_path):
    server.files["/file.bin"] = payload()
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match="Checksum mismatch"):
        download(server.url("/file.bin"), dest, sha256="0" * 64, progress=False)
    assert not dest.exists()
    assert not (tmp_path / "file.bin.part").exists()
    assert (tmp_path / "file.bin.bad").read_bytes() == server.files["/file.bin"]


def test_resume_after_partial_part_file(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(data[:123_457])
    download(server.url("/file.bin"), dest, sha256=sha(data), progress=False)
    assert dest.read_bytes() == data
    (request,) = server.requests
    assert request["range"] == "bytes=123457-" and request["status"] == 206
    assert request["sent"] == len(data) - 123_457  # only the remainder travelled


def test_broken_connection_is_resumed_automatically(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    server.drop_after = 100_000
    dest = tmp_path / "file.bin"
    download(server.url("/file.bin"), dest, sha256=sha(data), progress=False)
    assert dest.read_bytes() == data
    assert [(r["status"], r["range"], r["sent"]) for r in server.requests] == [
        (200, None, 100_000), (206, "bytes=100000-", len(data) - 100_000)]


def test_broken_connection_keeps_part_file_when_retries_run_out(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    server.drop_after = 70_000
    with pytest.raises(DownloadError, match="Run the script again to resume"):
        download(server.url("/file.bin"), tmp_path / "file.bin", sha256=sha(data), progress=False, retries=0)
    assert (tmp_path / "file.bin.part").stat().st_size == 70_000
    assert not (tmp_path / "file.bin").exists()


def test_restart_when_server_ignores_ranges(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    server.support_range = False
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes that must not survive")
    download(server.url("/file.bin"), dest, sha256=sha(data), progress=False)
    assert dest.read_bytes() == data
    assert server.requests[0]["status"] == 200


def test_complete_part_file_is_verified_not_refetched(server, tmp_path):
    data = payload(5000)
    server.files["/file.bin"] = data
    (tmp_path / "file.bin.part").write_bytes(data)
    download(server.url("/file.bin"), tmp_path / "file.bin", sha256=sha(data), progress=False)
    assert (tmp_path / "file.bin").read_bytes() == data
    assert server.requests[0]["status"] == 416


def test_rerun_is_idempotent(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    dest = tmp_path / "file.bin"
    download(server.url("/file.bin"), dest, sha256=sha(data), progress=False)
    mtime = dest.stat().st_mtime_ns
    download(server.url("/file.bin"), dest, sha256=sha(data), progress=False)
    assert len(server.requests) == 1
    assert dest.stat().st_mtime_ns == mtime


def test_manifest_recorded_on_first_run_and_enforced_later(server, tmp_path):
    data = payload()
    server.files["/file.bin"] = data
    manifest = tmp_path / "manifest.json"
    url = server.url("/file.bin")
    download(url, tmp_path / "a" / "file.bin", manifest=manifest, key="demo/file.bin", progress=False)
    entry = json.loads(manifest.read_text())["demo/file.bin"]
    assert entry["sha256"] == sha(data)
    assert entry["source"] == RECORDED_NOT_PUBLISHED
    assert entry["url"] == url and entry["size"] == len(data) and len(entry["date"]) == 10

    # Same file again elsewhere: verified against the record, no new entry.
    download(url, tmp_path / "b" / "file.bin", manifest=manifest, key="demo/file.bin", progress=False)
    assert json.loads(manifest.read_text()) == {"demo/file.bin": entry}

    # The publisher's file changes: the recorded hash is enforced.
    server.files["/file.bin"] = payload(seed=1)
    with pytest.raises(ChecksumError, match="recorded in"):
        download(url, tmp_path / "c" / "file.bin", manifest=manifest, key="demo/file.bin", progress=False)
    assert not (tmp_path / "c" / "file.bin").exists()
    assert json.loads(manifest.read_text()) == {"demo/file.bin": entry}


def test_manifest_never_overwrites_an_entry(tmp_path):
    m = Manifest(tmp_path / "m.json")
    m.record("k", "a" * 64, url="http://x/k", size=1)
    with pytest.raises(DownloadError, match="not overwritten"):
        m.record("k", "b" * 64, url="http://x/k", size=1)


def test_from_file_is_verified_like_a_download(server, tmp_path):
    data = payload(10_000)
    supplied = tmp_path / "already" / "file.bin"
    supplied.parent.mkdir()
    supplied.write_bytes(data)
    manifest = tmp_path / "m.json"
    url = server.url("/file.bin")  # never contacted
    got = fetch(url, tmp_path / "dl" / "file.bin", from_file=supplied, manifest=manifest, key="k", progress=False)
    assert got == supplied
    assert json.loads(manifest.read_text())["k"]["sha256"] == sha(data)
    supplied.write_bytes(payload(10_000, seed=3))
    with pytest.raises(ChecksumError):
        fetch(url, tmp_path / "dl" / "file.bin", from_file=supplied, manifest=manifest, key="k", progress=False)
    with pytest.raises(ChecksumError):
        fetch(url, tmp_path / "dl" / "file.bin", from_file=supplied, sha256=sha(data), progress=False)
    assert server.requests == []


def test_existing_file_with_wrong_hash_is_reported(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="Delete it"):
        download(server.url("/file.bin"), dest, sha256=sha(b"it"), progress=False)
    assert server.requests == []


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.bin"), tmp_path / "missing.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "missing.bin").exists()


def test_unreachable_server_fails_fast_with_instructions(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/data.zip"
    start = time.monotonic()
    with pytest.raises(OfflineError) as info:
        download(url, tmp_path / "data.zip", sha256="0" * 64, timeout=5, progress=False)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "internet" in message and "--from-file" in message and url in message
    assert not (tmp_path / "data.zip").exists()


def test_hanging_name_lookup_still_fails_fast(monkeypatch, tmp_path):
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    with pytest.raises(OfflineError, match="no answer within 0.2 s"):
        download("http://data.example.invalid/x.zip", tmp_path / "x.zip", sha256="0" * 64, timeout=0.2, progress=False)
    assert time.monotonic() - start < 2.5


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


def _tar(path: Path, members: List[tarfile.TarInfo], contents: Dict[str, bytes] | None = None, mode: str = "w") -> Path:
    contents = contents or {}
    with tarfile.open(path, mode) as tf:
        for m in members:
            data = contents.get(m.name)
            if data is not None:
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
            else:
                tf.addfile(m)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = target
    return m


def _dir(name: str) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = tarfile.DIRTYPE
    m.mode = 0o755
    return m


def _leftovers(parent: Path, keep: set) -> List[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2")])
def test_good_tar_extracts_idempotently(tmp_path, suffix, mode):
    archive = _tar(
        tmp_path / f"good{suffix}",
        [_dir("top"), _file("top/a.txt"), _file("top/sub/b.txt"), _link("top/link", "a.txt"),
         _link("top/hard", "top/a.txt", tarfile.LNKTYPE)],
        {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta"}, mode,
    )
    target = tmp_path / "work" / "good"
    assert extract_archive(archive, target) == target
    assert (target / "top/a.txt").read_bytes() == b"alpha"
    assert (target / "top/sub/b.txt").read_bytes() == b"beta"
    assert (target / "top/link").read_bytes() == b"alpha" and (target / "top/link").is_symlink()
    assert (target / "top/hard").read_bytes() == b"alpha"
    assert json.loads((target / EXTRACTED_MARKER).read_text())["archive"] == archive.name
    (target / "top/a.txt").write_bytes(b"changed")  # a re-run must not extract again
    extract_archive(archive, target)
    assert (target / "top/a.txt").read_bytes() == b"changed"
    assert _leftovers(target.parent, {"good"}) == []


def test_good_zip_extracts(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/one.txt", "1")
        zf.writestr("two.txt", "2")
    target = extract_archive(archive, tmp_path / "good")
    assert (target / "x/one.txt").read_text() == "1" and (target / "two.txt").read_text() == "2"


def test_extraction_refuses_a_different_archive_in_the_same_target(tmp_path):
    a = tmp_path / "a.zip"
    with zipfile.ZipFile(a, "w") as zf:
        zf.writestr("f.txt", "a")
    b = tmp_path / "b.zip"
    with zipfile.ZipFile(b, "w") as zf:
        zf.writestr("f.txt", "bb")
    extract_archive(a, tmp_path / "t")
    with pytest.raises(DownloadError, match="another archive"):
        extract_archive(b, tmp_path / "t")


MALICIOUS_TARS = {
    "absolute": ([_file("/abs_evil.txt")], {"/abs_evil.txt": b"x"}),
    "dotdot": ([_file("ok.txt"), _file("../dotdot_evil.txt")], {"ok.txt": b"ok", "../dotdot_evil.txt": b"x"}),
    "nested_dotdot": ([_file("a/../../nested_evil.txt")], {"a/../../nested_evil.txt": b"x"}),
    "symlink_escape": ([_link("escape", "../outside_dir")], {}),
    "symlink_absolute": ([_link("abs", "/etc")], {}),
    "hardlink_escape": ([_link("hard", "../outside_file.txt", tarfile.LNKTYPE)], {}),
    # Lexically every link stays inside, but "sub/up2" really resolves to the target's parent.
    "symlink_chain": ([_dir("sub"), _link("sub/up", ".."), _link("sub/up2", "up/.."), _file("sub/up2/chain_evil.txt")],
                      {"sub/up2/chain_evil.txt": b"x"}),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS_TARS))
def test_malicious_tar_is_rejected_and_writes_nothing(tmp_path, case):
    members, contents = MALICIOUS_TARS[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar(tmp_path / "evil.tar", members, contents)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, work / "target")
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before  # no target, no temporary folder, nothing outside
    assert not Path("/abs_evil.txt").exists()


def test_device_file_in_tar_is_rejected(tmp_path):
    dev = tarfile.TarInfo("null")
    dev.type = tarfile.CHRTYPE
    dev.devmajor, dev.devminor = 1, 3
    archive = _tar(tmp_path / "dev.tar", [dev])
    with pytest.raises(UnsafeArchiveError, match="device"):
        extract_archive(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("name", ["../zip_evil.txt", "/zip_abs_evil.txt", "a/../../zip_evil2.txt"])
def test_malicious_zip_is_rejected(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr(zipfile.ZipInfo(name), "evil")
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, work / "target")
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip", "work"]


def test_damaged_archive_leaves_nothing(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    good = _tar(tmp_path / "ok.tar.gz", [_file("a.bin")], {"a.bin": os.urandom(50_000)}, "w:gz")
    archive.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DownloadError, match="damaged"):
        extract_archive(archive, tmp_path / "work" / "t")
    assert list((tmp_path / "work").iterdir()) == []


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(payload(3_000_000))
    assert sha256_file(p) == sha(p.read_bytes())


# --------------------------------------------------------------------------------------------------
# The data scripts' command lines
# --------------------------------------------------------------------------------------------------


def _run_all(commands: List[List[str]], timeout: float = 60) -> List[subprocess.CompletedProcess]:
    """Run commands concurrently (each in its own process) and collect their results."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              stdin=subprocess.DEVNULL) for c in commands]
    results = []
    for c, p in zip(commands, procs):
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return results


def test_every_script_has_help_with_licence_and_url():
    results = _run_all([[sys.executable, str(REPO / "data_scripts" / s), "--help"] for s in SCRIPTS])
    for script, r in zip(SCRIPTS, results):
        assert r.returncode == 0, (script, r.stderr)
        text = r.stdout.lower()
        assert "licence:" in text and "http" in text, script
        for option in ("--out", "--from-file", "--manifest", "output layout"):
            assert option in text, (script, option)


def test_every_script_fails_fast_offline(tmp_path):
    mirror = f"http://127.0.0.1:{closed_port()}/"
    images = tmp_path / "diw_images"
    images.mkdir()
    extra = {"weizmann.py": ["--actions", "walk"], "diw.py": ["--from-file", str(images)]}
    commands = [
        [sys.executable, str(REPO / "data_scripts" / s), "--out", str(tmp_path / s / "out"), "--mirror", mirror,
         "--manifest", str(tmp_path / "manifest.json"), "--timeout", "5", "--no-progress", *extra.get(s, [])]
        for s in SCRIPTS
    ]
    start = time.monotonic()
    results = _run_all(commands)
    assert time.monotonic() - start < 30
    for script, r in zip(SCRIPTS, results):
        assert r.returncode == 1, (script, r.stdout, r.stderr)
        assert "needs internet" in r.stderr and "--from-file" in r.stderr, (script, r.stderr)
        assert "Traceback" not in r.stderr, (script, r.stderr)
        assert not (tmp_path / script / "out" / "PREPARED").exists()
    assert not (tmp_path / "manifest.json").exists()
