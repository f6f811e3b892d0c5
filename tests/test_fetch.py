"""fetch against a real HTTP server on 127.0.0.1 serving a real zip, and from local copies."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import PETIMAGES_MINI
from dlcompare.data.fetch import fetch
from dlcompare.errors import UserError
from dlcompare.params import DataParams

PAYLOAD = PETIMAGES_MINI.read_bytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FixtureServer:
    """Serves PAYLOAD at /pets.zip with Range support; can cut responses short."""

    def __init__(self):
        self.requests: list[dict] = []
        self.cut_next = 0  # how many upcoming responses stop a third of the way through
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path in ("/endless.zip", "/announces-10gb.zip"):
                    self.send_response(200)
                    if self.path == "/announces-10gb.zip":
                        self.send_header("Content-Length", str(10 * 2**30))
                    self.end_headers()
                    try:  # a body that never ends (until the client hangs up)
                        while True:
                            self.wfile.write(b"\0" * 2**16)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                if self.path != "/pets.zip":
                    self.send_error(404)
                    return
                start = 0
                wanted = self.headers.get("Range")
                if wanted and server.honour_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"pets-v1"')
                self.end_headers()
                if server.cut_next:
                    server.cut_next -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pets.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    fixture = FixtureServer()
    yield fixture
    fixture.httpd.shutdown()


def run_fetch(tmp_path: Path, **data) -> Path:
    return fetch(DataParams(**data), tmp_path / "data" / "raw", tmp_path / "data" / "downloads")


def test_download_verifies_checksum_and_places_the_zip(tmp_path, server):
    placed = run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert placed == tmp_path / "data" / "raw" / "pets.zip"
    assert placed.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None]
    assert sorted(p.name for p in (tmp_path / "data" / "downloads").iterdir()) == ["pets.zip"]
    # A second fetch (DVC empties data/raw before re-running) reuses the verified download.
    run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert len(server.requests) == 1


def test_interrupted_download_resumes_with_a_range_request(tmp_path, server):
    server.cut_next = 1
    placed = run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert placed.read_bytes() == PAYLOAD
    assert server.requests[0]["range"] is None
    resumed_at = int(server.requests[1]["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= len(PAYLOAD) // 3  # whole chunks received before the cut are kept


def test_download_that_keeps_failing_stops_and_a_later_run_resumes(tmp_path, server):
    server.cut_next = 100
    with pytest.raises(UserError, match="run `dlcompare fetch` again to resume"):
        run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert not (tmp_path / "data" / "raw").exists()
    part = tmp_path / "data" / "downloads" / "pets.zip.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size
    server.cut_next = 0
    placed = run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert placed.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == f"bytes={kept}-"
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    server.cut_next = 1
    server.honour_range = False
    placed = run_fetch(tmp_path, source="download", url=server.url, sha256=PAYLOAD_SHA)
    assert placed.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing_that_looks_like_data(tmp_path, server):
    with pytest.raises(UserError, match="does not match data.sha256"):
        run_fetch(tmp_path, source="download", url=server.url, sha256="0" * 64)
    assert not (tmp_path / "data" / "raw").exists()
    assert list((tmp_path / "data" / "downloads").iterdir()) == []


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(UserError, match="HTTP 404"):
        run_fetch(tmp_path, source="download", url=server.url.replace("pets", "missing"), sha256=None)


def test_offline_names_the_other_ways_to_provide_data(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(UserError) as caught:
        run_fetch(tmp_path, source="download", url=f"http://127.0.0.1:{port}/x.zip", sha256=None)
    message = str(caught.value)
    assert "cannot download" in message and "train.zip" in message and "folder" in message and "kaggle" in message
    assert not (tmp_path / "data" / "raw").exists()


def test_local_zip_is_linked_not_copied(tmp_path):
    source = tmp_path / "mine.zip"
    source.write_bytes(PAYLOAD)
    placed = run_fetch(tmp_path, source=str(source))
    assert placed.read_bytes() == PAYLOAD
    assert placed.stat().st_ino == source.stat().st_ino


def test_local_folder_is_mirrored(tmp_path):
    folder = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "1.jpg").write_bytes(cls.encode())
    placed = run_fetch(tmp_path, source=str(folder))
    assert sorted(p.relative_to(placed).as_posix() for p in placed.rglob("*.jpg")) == ["cat/1.jpg", "dog/1.jpg"]


def test_missing_local_source_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        run_fetch(tmp_path, source=str(tmp_path / "nowhere.zip"))


def test_kaggle_without_credentials_says_what_to_set_up(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    with pytest.raises(UserError, match="kaggle.json"):
        run_fetch(tmp_path, source="kaggle")


def test_relative_source_is_taken_from_the_project_root_even_inside_a_dvc_experiment_copy(tmp_path):
    from dlcompare.data.fetch import project_root, source_path

    queued = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    queued.mkdir(parents=True)
    assert project_root(queued) == (tmp_path / "project").resolve()
    assert source_path("../data.zip", queued) == (tmp_path / "project").resolve() / "../data.zip"
    assert source_path("/abs/data.zip", queued) == Path("/abs/data.zip")
    assert project_root(tmp_path) == tmp_path.resolve()


@pytest.mark.parametrize("path", ["endless.zip", "announces-10gb.zip"])
def test_download_past_max_bytes_is_stopped_and_deleted(tmp_path, server, path):
    url = server.url.replace("pets.zip", path)
    with pytest.raises(UserError, match="data.max_bytes = 3,000,000") as error:
        run_fetch(tmp_path, source="download", url=url, sha256=None, max_bytes=3_000_000)
    assert "\n" not in str(error.value)
    downloads = tmp_path / "data" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    assert not (tmp_path / "data" / "raw").exists()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/pets.zip", "127.0.0.1/pets.zip", "http://host"])
def test_url_that_is_not_http_is_one_line_naming_the_key(tmp_path, url):
    from conftest import run_cli, write_params

    write_params(tmp_path, f"data:\n  url: {url}\n")
    result = run_cli("fetch", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dlcompare: error: params.yaml: data.url = ") and url in line


def test_url_ending_in_dotdot_downloads_into_a_file_not_a_folder(tmp_path, server):
    url = server.url.replace("pets.zip", "pets.zip/..")
    with pytest.raises(UserError, match="HTTP 404"):
        run_fetch(tmp_path, source="download", url=url, sha256=None)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads"]
    assert [p.name for p in (tmp_path / "data" / "downloads").iterdir()] == []


def test_source_folder_that_contains_the_project_is_refused(tmp_path):
    photos = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (photos / cls).mkdir(parents=True)
        (photos / cls / "1.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="contains the output folder"):
        fetch(DataParams(source=str(photos)), photos / "project" / "data" / "raw", tmp_path / "downloads")
    assert not (photos / "project").exists()
