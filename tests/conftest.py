from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from media import write_bad_files, write_photos  # noqa: E402


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    write_photos(d)
    return d


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory, photo_dir) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("bad")
    return d, write_bad_files(d, photo_dir / "rocket.jpg")


@pytest.fixture(scope="session")
def spark():
    import sparkmm

    s = sparkmm.session(**{"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2"})
    sparkmm.register(s)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def http(photo_dir):
    from httpserver import MediaServer

    server = MediaServer(photo_dir)
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3(photo_dir):
    from objectstore import MotoServer

    server = MotoServer()
    c = server.client()
    c.create_bucket(Bucket="media")
    for p in sorted(photo_dir.iterdir()):
        c.put_object(Bucket="media", Key=f"photos/{p.name}", Body=p.read_bytes())
    yield server
    server.close()
