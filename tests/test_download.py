"""The COCO downloader (course_lib.data.download, data_scripts/get_coco.py) against a local fake server.

No test touches the network: files are served from 127.0.0.1 by a tiny HTTP server that honours
``Range`` (or ignores it on request) and can drop the connection part-way, like a flaky link.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import random
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import course_lib.data.download
from course_lib.data.download import (
    COCO_FILES,
    DownloadError,
    RemoteFile,
    download,
    extract,
    is_downloaded,
    is_extracted,
)

PAYLOAD = random.Random(0).randbytes(300_000)
GET_COCO = Path(__file__).resolve().parents[1] / "data_scripts" / "get_coco.py"


@dataclass
class FakeServer:
    """Files served by path, what was asked for, and the faults to inject."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_after: int | None = None  # the next response stops after this many body bytes
    ignore_range: bool = False  # answer 200 with the whole file, as some servers do

    def remote(self, name: str, data: bytes, size: int | None = None, sha1: str | None = None) -> RemoteFile:
        """Serve ``data`` as ``/name`` and describe it (with a wrong size or SHA-1 if given)."""
        self.files[f"/{name}"] = data
        return RemoteFile(
            name, f"{self.base_url}/{name}", len(data) if size is None else size, sha1 or hashlib.sha1(data).hexdigest()
        )


def make_handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(match[1]) if match and not state.ignore_range else 0
            if start >= len(body) > 0:
                self.send_error(416)
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            sent = body[start:]
            if state.cut_after is not None:  # promise everything, send a part, hang up
                sent, state.cut_after = sent[: state.cut_after], None
            self.wfile.write(sent)

        def log_message(self, *args) -> None:  # keep pytest's output clean
            pass

    return Handler


@pytest.fixture
def server(monkeypatch):
    """A :class:`FakeServer` listening on a free port of 127.0.0.1 for the duration of a test."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # a proxy would not reach our local server
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused, as when offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def load_get_coco():
    spec = importlib.util.spec_from_file_location("get_coco", GET_COCO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- download -----------------------------------------------------------------------------------


def test_fresh_download_is_verified_and_renamed(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD)
    path = download(remote, tmp_path / "coco")
    assert path == tmp_path / "coco" / "val.zip"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "coco" / "val.zip.part").exists()
    assert is_downloaded(remote, tmp_path / "coco")
    assert server.requests == [("/val.zip", None)]


def test_second_call_neither_fetches_nor_rehashes(server, tmp_path, monkeypatch):
    remote = server.remote("val.zip", PAYLOAD)
    download(remote, tmp_path)
    server.requests.clear()

    def no_rehash(*args, **kwargs):
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(course_lib.data.download, "_hash_into", no_rehash)  # 18 GB takes minutes to hash
    assert download(remote, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == []


def test_complete_but_unverified_file_is_hashed_not_fetched(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD)
    (tmp_path / "val.zip").write_bytes(PAYLOAD)  # e.g. copied from a USB stick
    assert not is_downloaded(remote, tmp_path)
    assert download(remote, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == []
    assert is_downloaded(remote, tmp_path)


def test_truncated_transfer_keeps_the_part_and_resumes(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD)
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download(remote, tmp_path)
    assert (tmp_path / "val.zip.part").stat().st_size == 100_000
    assert not (tmp_path / "val.zip").exists()

    path = download(remote, tmp_path)
    assert server.requests[-1] == ("/val.zip", "bytes=100000-")
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "val.zip.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD)
    # A wrong prefix: appending to it would fail the checksum, so success proves the restart.
    (tmp_path / "val.zip.part").write_bytes(b"\0" * 50_000)
    server.ignore_range = True
    assert download(remote, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [("/val.zip", "bytes=50000-")]


def test_checksum_mismatch_deletes_the_file_and_says_so(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD, sha1="0" * 40)
    with pytest.raises(DownloadError, match="corrupt") as raised:
        download(remote, tmp_path)
    message = str(raised.value)
    assert "0" * 40 in message and hashlib.sha1(PAYLOAD).hexdigest() in message
    assert "run the same command again" in message
    assert not (tmp_path / "val.zip").exists()
    assert not (tmp_path / "val.zip.part").exists()
    assert not is_downloaded(remote, tmp_path)


def test_size_mismatch_is_refused_before_writing(server, tmp_path):
    remote = server.remote("val.zip", PAYLOAD, size=len(PAYLOAD) + 10)
    with pytest.raises(DownloadError, match=f"{len(PAYLOAD)} bytes .* but {len(PAYLOAD) + 10} were expected"):
        download(remote, tmp_path)
    assert not (tmp_path / "val.zip").exists()
    assert not (tmp_path / "val.zip.part").exists()


def test_http_error_names_the_status(server, tmp_path):
    remote = RemoteFile("gone.zip", f"{server.base_url}/gone.zip", 10, "0" * 40)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(remote, tmp_path)


def test_unreachable_host_says_offline_and_offers_the_scenes(tmp_path):
    remote = RemoteFile("val.zip", closed_port_url("val.zip"), len(PAYLOAD), "0" * 40)
    with pytest.raises(DownloadError) as raised:
        download(remote, tmp_path)
    message = str(raised.value)
    assert "Could not reach 127.0.0.1" in message and "you seem to be offline" in message
    assert "make_scenes.py" in message
    assert not (tmp_path / "val.zip").exists()


def test_not_enough_disk_space_fails_before_any_request(server, tmp_path):
    remote = server.remote("huge.zip", PAYLOAD, size=10**18)
    with pytest.raises(DownloadError, match="free disk space"):
        download(remote, tmp_path)
    assert server.requests == []


# --- extract ------------------------------------------------------------------------------------


def test_extract_unzips_once(tmp_path):
    archive = tmp_path / "val2017.zip"
    archive.write_bytes(zip_bytes({"val2017/1.jpg": b"one", "val2017/2.jpg": b"two"}))
    root = tmp_path / "coco"
    assert extract(archive, root) == root
    assert (root / "val2017" / "2.jpg").read_bytes() == b"two"
    assert is_extracted(archive, root)

    (root / "val2017" / "1.jpg").write_bytes(b"edited")
    extract(archive, root)  # done before: nothing is rewritten
    assert (root / "val2017" / "1.jpg").read_bytes() == b"edited"
    archive.unlink()  # deleting the zip to save space keeps it "extracted"
    assert is_extracted(archive, root)


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "bad member"])
def test_corrupt_zip_raises_clearly(tmp_path, damage):
    good = zip_bytes({"val2017/1.jpg": random.Random(1).randbytes(5_000)})
    data = {
        "not a zip": b"<html>captive portal</html>",
        "truncated": good[: len(good) // 2],
        # flip a byte in the compressed data of the member: the zip opens, its CRC check fails
        "bad member": good[:100] + bytes([good[100] ^ 0xFF]) + good[101:],
    }[damage]
    archive = tmp_path / "val2017.zip"
    archive.write_bytes(data)
    with pytest.raises(DownloadError, match="is not a valid zip archive.*Delete it"):
        extract(archive, tmp_path / "coco")
    assert not is_extracted(archive, tmp_path / "coco")


# --- get_coco.py --------------------------------------------------------------------------------


@pytest.fixture
def fake_coco(server, monkeypatch) -> FakeServer:
    """COCO_FILES pointed at tiny archives on the fake server; train2017 points at a closed port."""
    archives = {
        "val2017.zip": zip_bytes({"val2017/000000000139.jpg": b"jpeg"}),
        "annotations_trainval2017.zip": zip_bytes(
            {"annotations/captions_val2017.json": b"{}", "annotations/instances_val2017.json": b"{}"}
        ),
    }
    for name, data in archives.items():
        monkeypatch.setitem(COCO_FILES, name, server.remote(name, data))
    monkeypatch.setitem(
        COCO_FILES, "train2017.zip", RemoteFile("train2017.zip", closed_port_url("train2017.zip"), 10, "0" * 40)
    )
    return server


def test_get_coco_downloads_extracts_and_says_what_next(fake_coco, tmp_path, capsys):
    get_coco = load_get_coco()
    root = tmp_path / "coco"
    assert get_coco.main(["--root", str(root)]) == 0  # train2017 (unreachable) is not fetched by default
    assert (root / "val2017" / "000000000139.jpg").read_bytes() == b"jpeg"
    assert (root / "annotations" / "captions_val2017.json").is_file()
    out = capsys.readouterr().out
    assert "to download" in out and "(1 images)" in out
    assert f"prepare_coco.py --root {root}" in out

    fake_coco.requests.clear()
    assert get_coco.main(["--root", str(root)]) == 0
    assert fake_coco.requests == []
    assert capsys.readouterr().out.count("already extracted") == 2


def test_get_coco_no_extract_keeps_the_zips(fake_coco, tmp_path, capsys):
    root = tmp_path / "coco"
    assert load_get_coco().main(["--root", str(root), "--no-extract"]) == 0
    assert (root / "val2017.zip").is_file() and not (root / "val2017").exists()
    assert "without --no-extract" in capsys.readouterr().out


def test_get_coco_exits_1_with_the_message_and_no_traceback(fake_coco, tmp_path, capsys):
    assert load_get_coco().main(["--root", str(tmp_path / "coco"), "--train"]) == 1
    captured = capsys.readouterr()
    assert "train2017.zip" in captured.out  # announced in the plan
    assert "you seem to be offline" in captured.err
    assert "Traceback" not in captured.err
