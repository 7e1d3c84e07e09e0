"""`kit.data.download` against a local HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import random
import re
import socket
import threading

import pytest

from kit.cli import main
from kit.data import download as dl
from kit.data import hub
from kit.errors import UserError

DATA = random.Random(0).randbytes(200_000)
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "geo-reviews-dataset-2023.tskv"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves DATA at /file with Range support; behaviour set on the server object."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def handle(self):
        # The client hangs up early on purpose (size check, 404): not a failure.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        if self.path != "/file":
            self.send_error(404, "Not Found")
            return
        start, status = 0, 200
        if rng and srv.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(srv.data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(srv.data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = srv.data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(srv.data) - 1}/{len(srv.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_at is not None:  # send part of the body, then drop the connection
            body, srv.cut_at = body[: srv.cut_at], None
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        srv.sent += len(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.data, srv.ranges, srv.sent, srv.honour_range, srv.cut_at = DATA, [], 0, True, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def fetch(url, target, **kw):
    kw = {
        "size": len(DATA),
        "sha256": SHA,
        "progress": False,
        "chunk_size": 8192,
        "timeout": (2, 5),
        "retry_wait_s": 0,
        **kw,
    }
    return dl.fetch_file(url, target, **kw)


def assert_one_line(message: str):
    assert message and "\n" not in message and "Traceback" not in message


def test_full_download_verifies_and_renames(server, tmp_path):
    path = fetch(server.url, tmp_path / NAME)
    assert path == tmp_path / NAME and path.read_bytes() == DATA
    assert not (tmp_path / (NAME + ".part")).exists()
    assert server.ranges == [None] and server.sent == len(DATA)


def test_resume_sends_only_the_rest(server, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(DATA[:50_000])
    assert fetch(server.url, tmp_path / NAME).read_bytes() == DATA
    assert server.ranges == ["bytes=50000-"] and server.sent == len(DATA) - 50_000


def test_server_ignoring_range_starts_over(server, tmp_path):
    server.honour_range = False
    (tmp_path / (NAME + ".part")).write_bytes(b"x" * 50_000)  # wrong bytes: must be discarded
    assert fetch(server.url, tmp_path / NAME).read_bytes() == DATA
    assert server.ranges == ["bytes=50000-"] and server.sent == len(DATA)


def test_complete_part_is_verified_after_416(server, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(DATA)
    # Unknown size: the client must ask, get 416, and then verify the part.
    assert fetch(server.url, tmp_path / NAME, size=None).read_bytes() == DATA
    assert server.ranges == [f"bytes={len(DATA)}-"] and server.sent == 0


def test_checksum_mismatch_deletes_part(server, tmp_path):
    with pytest.raises(UserError) as e:
        fetch(server.url, tmp_path / NAME, sha256="0" * 64)
    assert_one_line(str(e.value))
    assert "0" * 64 in str(e.value) and SHA in str(e.value)
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_size_mismatch_is_reported(server, tmp_path):
    with pytest.raises(UserError, match=r"expected 123,456 bytes.*200,000") as e:
        fetch(server.url, tmp_path / NAME, size=123_456)
    assert_one_line(str(e.value))
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_interrupted_transfer_keeps_part_then_resumes(server, tmp_path):
    server.cut_at = len(DATA) // 2
    with pytest.raises(UserError, match="interrupted") as e:
        fetch(server.url, tmp_path / NAME, retries=0)
    assert_one_line(str(e.value))
    part = tmp_path / (NAME + ".part")
    assert part.exists() and 0 < part.stat().st_size <= len(DATA) // 2
    assert not (tmp_path / NAME).exists()
    have = part.stat().st_size
    assert fetch(server.url, tmp_path / NAME).read_bytes() == DATA
    assert server.ranges[-1] == f"bytes={have}-"


def test_interrupted_transfer_is_retried(server, tmp_path):
    server.cut_at = len(DATA) // 2
    assert fetch(server.url, tmp_path / NAME).read_bytes() == DATA
    assert server.ranges[0] is None and server.ranges[1].startswith("bytes=")


def test_existing_verified_file_is_not_fetched(server, tmp_path, capsys):
    (tmp_path / NAME).write_bytes(DATA)
    assert fetch(server.url, tmp_path / NAME, progress=True) == tmp_path / NAME
    assert server.ranges == []
    assert "already downloaded" in capsys.readouterr().err


def test_existing_wrong_file_is_not_overwritten(server, tmp_path):
    (tmp_path / NAME).write_bytes(b"old")
    with pytest.raises(UserError, match="Delete"):
        fetch(server.url, tmp_path / NAME)
    assert (tmp_path / NAME).read_bytes() == b"old"


def test_connection_refused_is_one_line(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="connection refused") as e:
        fetch(f"http://127.0.0.1:{port}/file", tmp_path / NAME)
    assert_one_line(str(e.value))
    assert "synthetic sample" in str(e.value)


def test_silent_server_times_out(tmp_path):
    with socket.socket() as s:  # listens (so connect succeeds) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match="timed out") as e:
            fetch(f"http://127.0.0.1:{s.getsockname()[1]}/file", tmp_path / NAME, timeout=(0.5, 0.5))
    assert_one_line(str(e.value))


def test_http_404_is_one_line(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404") as e:
        fetch(server.url.replace("/file", "/missing"), tmp_path / NAME)
    assert_one_line(str(e.value))
    assert not (tmp_path / NAME).exists()


def test_bad_sha256_argument(tmp_path):
    with pytest.raises(UserError, match="64 hex"):
        fetch("http://127.0.0.1:9/file", tmp_path / NAME, sha256="abc")


def test_cli_success(server, tmp_path, capsys):
    code = main(
        [
            "data",
            "download",
            "--url",
            server.url,
            "--out",
            str(tmp_path),
            "--quiet",
            "--size",
            str(len(DATA)),
            "--sha256",
            SHA,
        ]
    )
    assert code == 0
    assert (tmp_path / NAME).read_bytes() == DATA
    assert str(tmp_path / NAME) in capsys.readouterr().out


def test_cli_success_with_patched_constants(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "GITHUB_SIZE", len(DATA))
    monkeypatch.setattr(dl, "GITHUB_SHA256", SHA)
    assert main(["data", "download", "--url", server.url, "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / NAME).read_bytes() == DATA


@pytest.mark.parametrize("path", ["/missing", "/file"])  # 404; size differs from the real file
def test_cli_failure_exit_2_one_line(server, tmp_path, capsys, path):
    url = server.url.replace("/file", path)
    assert main(["data", "download", "--url", url, "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / NAME).exists()


# --------------------------------------------------------------------------- hub

TOKEN = "hf_FAKEtoken0123456789secret"


def test_hub_offline_is_one_line_without_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UserError, match="offline") as e:
        dl.download("hub", tmp_path, progress=False)
    assert_one_line(str(e.value))
    assert TOKEN not in str(e.value)
    assert not (tmp_path / hub.HUB_FILENAME).exists()


def test_hub_network_error_is_scrubbed(tmp_path, monkeypatch):
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HUGGING_FACE_ACCESS_TOKEN", TOKEN)
    seen = {}

    def fake_load_dataset(repo_id, **kw):
        seen.update(kw)
        raise ConnectionError(f"cannot reach huggingface.co\n(Authorization: Bearer {TOKEN})")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(UserError, match="no network connection") as e:
        dl.download("hub", tmp_path, progress=False)
    assert_one_line(str(e.value))
    assert TOKEN not in str(e.value) and seen["token"] == TOKEN


def test_hub_writes_parquet(tmp_path, monkeypatch):
    import datasets
    import pyarrow.parquet as pq

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    table = {"rating": [5, 1], "text": ["Отлично", "Плохо"]}
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id, **kw: datasets.Dataset.from_dict(table))
    path = dl.download("hub", tmp_path, progress=False)
    assert path == tmp_path / hub.HUB_FILENAME
    assert pq.read_table(path).to_pydict() == table
    assert [p.name for p in tmp_path.iterdir()] == [hub.HUB_FILENAME]  # no temp left behind


def test_hub_other_repo_gets_its_own_file(tmp_path, monkeypatch):
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    seen = []
    monkeypatch.setattr(
        datasets, "load_dataset", lambda repo_id, **kw: seen.append(repo_id) or datasets.Dataset.from_dict({"a": [1]})
    )
    path = dl.download("hub", tmp_path, repo="me/reviews", progress=False)
    assert path.name == "me__reviews.parquet" and seen == ["me/reviews"]
    assert dl.download("hub", tmp_path, repo="me/reviews", progress=False) == path
    assert seen == ["me/reviews"]  # the second call did not load again


def test_hub_argument_errors(tmp_path):
    with pytest.raises(UserError, match="only to --source github"):
        dl.download("hub", tmp_path, url="http://x")
    with pytest.raises(UserError, match="OWNER/NAME"):
        dl.download("hub", tmp_path, repo="no-slash")
    with pytest.raises(UserError, match="only to source='hub'"):
        dl.download("github", tmp_path, repo="a/b")
    with pytest.raises(UserError, match="Unknown download source"):
        dl.download("ftp", tmp_path)
