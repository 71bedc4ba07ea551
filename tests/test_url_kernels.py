"""url.download against real files and a real HTTP server on loopback."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from sparkmm.errors import SparkmmError
from sparkmm.ops import url as U

LOCAL = {"allow_local_files": True}


def test_local_paths_and_file_urls(photo_dir):
    p = photo_dir / "rocket.jpg"
    data, errors = U.fetch(pa.array([str(p), f"file://{p}", f"file:{p}", str(photo_dir / "nope.jpg"), None,
                                     str(photo_dir)]), storage_options=LOCAL)
    want = p.read_bytes()
    assert data.to_pylist()[:3] == [want] * 3
    assert errors.to_pylist()[:3] == [None] * 3
    assert errors[3].as_py() == f"not_found: {photo_dir / 'nope.jpg'}"
    assert data[4].as_py() is None and errors[4].as_py() is None
    assert errors[5].as_py().startswith("is_a_directory")


def test_http_ok_and_permanent_failures_are_not_retried(http, photo_dir):
    urls = [f"{http.url}/files/rocket.jpg", f"{http.url}/status/404/once", f"{http.url}/files/missing.jpg"]
    data, errors = U.fetch(pa.array(urls), retries=3, backoff=0.01)
    assert data[0].as_py() == (photo_dir / "rocket.jpg").read_bytes()
    assert errors[1].as_py() == f"http_404: {urls[1]}"
    assert http.hits["/status/404/once"] == 1


def test_transient_failures_are_retried_with_backoff(http, photo_dir):
    url = f"{http.url}/flaky/2/coffee.png"
    data, errors = U.fetch(pa.array([url]), retries=3, backoff=0.01)
    assert errors[0].as_py() is None and data[0].as_py() == (photo_dir / "coffee.png").read_bytes()
    assert http.hits["/flaky/2/coffee.png"] == 3
    data, errors = U.fetch(pa.array([f"{http.url}/status/500"]), retries=2, backoff=0.01)
    assert errors[0].as_py() == f"http_500: {http.url}/status/500 (after 3 attempts)"


def test_timeout_is_bounded(http):
    start = time.monotonic()
    _, errors = U.fetch(pa.array([f"{http.url}/slow/5/rocket.jpg"]), timeout=0.5, retries=1, backoff=0.01)
    assert time.monotonic() - start < 3
    assert errors[0].as_py().startswith(("connection_error", "truncated"))


def test_truncated_body_is_detected(http):
    _, errors = U.fetch(pa.array([f"{http.url}/truncated/rocket.jpg"]), retries=1, backoff=0.01)
    assert errors[0].as_py().startswith("truncated")


def test_max_bytes(http, photo_dir):
    size = (photo_dir / "rocket.jpg").stat().st_size
    urls = pa.array([f"{http.url}/files/rocket.jpg", str(photo_dir / "rocket.jpg")])
    _, errors = U.fetch(urls, max_bytes=size - 1, storage_options=LOCAL)
    assert all(e.startswith("too_large") for e in errors.to_pylist())
    _, errors = U.fetch(urls, max_bytes=size, storage_options=LOCAL)
    assert errors.to_pylist() == [None, None]


def test_fetches_run_concurrently(http):
    urls = pa.array([f"{http.url}/delay/{i}/chelsea.png" for i in range(16)])
    start = time.monotonic()
    data, errors = U.fetch(urls, max_connections=8)
    elapsed = time.monotonic() - start
    assert errors.null_count == 16
    assert http.max_active >= 4
    assert elapsed < 16 * 0.2 / 2


def test_unsupported_scheme_names_known_ones():
    _, errors = U.fetch(pa.array(["gopher://x/y"]))
    assert errors[0].as_py().startswith("unsupported_scheme: gopher://")


def test_download_operator_raise_names_the_path(photo_dir):
    missing = str(photo_dir / "missing.jpg")
    assert U.download(pa.array([missing]), storage_options=LOCAL).to_pylist() == [None]
    with pytest.raises(SparkmmError, match="missing.jpg.*not_found"):
        U.download(pa.array([missing]), errors="raise", storage_options=LOCAL)


def test_local_files_need_an_opt_in(photo_dir, tmp_path):
    path = str(photo_dir / "rocket.jpg")
    for url in (path, f"file://{path}"):
        _, errors = U.fetch(pa.array([url]))
        assert errors[0].as_py().startswith("local_file_refused") and "allow_local_files" in errors[0].as_py()
    assert U.upload(pa.array([b"x"]), str(tmp_path), pa.array(["y"]))[0].as_py() is None
    assert not (tmp_path / "y").exists()


def test_chaos_server_every_object_fetched_or_flagged(http, photo_dir):
    names = sorted(p.name for p in photo_dir.iterdir())
    urls = [f"{http.url}/chaos/{i}/{n}" for i in range(4) for n in names] + [f"{http.url}/chaos/x/missing.jpg"]
    start = time.monotonic()
    data, errors = U.fetch(pa.array(urls), timeout=1.0, retries=6, backoff=0.01, max_connections=16)
    assert time.monotonic() - start < 60  # bounded: timeouts and retries, no hang
    for url, d, e in zip(urls, data.to_pylist(), errors.to_pylist()):
        name = url.rsplit("/", 1)[1]
        if d is not None:
            assert e is None and d == (photo_dir / name).read_bytes(), url  # never a truncated body
        else:
            assert e.split(":")[0] in ("http_503", "connection_error", "truncated", "http_404"), e
    fetched = sum(d is not None for d in data.to_pylist())
    assert fetched >= 0.9 * (len(urls) - 1)  # retries recover nearly everything
    assert errors[len(urls) - 1].as_py().startswith("http_404")
