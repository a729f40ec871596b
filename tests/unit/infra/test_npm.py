"""npm packages without npm: a real HTTP server on an ephemeral port plays the registry, with tarballs made here.

The server is Python's own ``http.server`` serving a directory laid out like the registry's API
(``/<name>/<version>`` answers the version document, ``/tarballs/...`` the files); it counts the tarball
downloads, so reuse and locking can be checked from the server's side.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from fraudlab.exceptions import IntegrityError, RegistryError, RegistryUnavailableError, ServiceUnavailableError
from fraudlab.infra.npm import MARKER, fetch_package, resolve_release, verify_integrity
from fraudlab.infra.process import free_port

NAME = "@fraudlab-test/tiny-db"
VERSION = "1.2.3"
FILES = {"package/data.bin": bytes(range(256)) * 64, "package/LICENSE": b"CC BY 4.0 - credit the test\n",
         "package/README.md": b"# not wanted\n"}


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _sri(content: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(content).digest()).decode()


class _Registry:
    """A directory served over HTTP as an npm registry; ``publish`` adds a version, ``downloads`` counts GETs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = 0
        registry = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/tarballs/"):
                    registry.downloads += 1
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, tarball: bytes, *, integrity: str | None = None, name: str = NAME,
                version: str = VERSION) -> str:
        path = self.root / "tarballs" / f"{name.replace('/', '-')}-{version}.tgz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tarball)
        url = f"{self.url}/tarballs/{path.name}"
        document = self.root / name / version
        document.parent.mkdir(parents=True, exist_ok=True)
        document.write_text(json.dumps({"name": name, "version": version, "dist": {
            "tarball": url, "integrity": integrity or _sri(tarball)}}))
        return url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[_Registry]:
    served = _Registry(tmp_path / "www")
    yield served
    served.stop()


def _leftovers(parent: Path) -> list[str]:
    """Anything but lock files in the target's parent: a half-written download or extraction."""
    return sorted(p.name for p in parent.iterdir() if not p.name.endswith(".lock")) if parent.exists() else []


def test_resolve_reads_the_version_document(registry):
    url = registry.publish(_tarball(FILES))
    release = resolve_release(NAME, VERSION, registry=registry.url)
    assert (release.name, release.version, release.tarball) == (NAME, VERSION, url)
    assert release.integrity == _sri((registry.root / "tarballs" / url.rsplit("/", 1)[1]).read_bytes())


def test_fetch_extracts_only_the_chosen_files_and_reuses_them_without_network(registry, tmp_path):
    """The wanted files land flat in the directory; a second fetch, registry gone, reuses them."""
    # Setup
    registry.publish(_tarball(FILES))
    target = tmp_path / "cache" / "tiny" / VERSION

    # Run
    fetched = fetch_package(NAME, VERSION, target, ["data.bin", "package/LICENSE"], registry=registry.url,
                            progress=False)
    registry.stop()
    again = fetch_package(NAME, VERSION, target, ["data.bin", "LICENSE"], registry=f"http://127.0.0.1:{free_port()}",
                          progress=False)

    # Assert
    assert fetched.downloaded and not again.downloaded
    assert sorted(p.name for p in target.iterdir()) == sorted([MARKER, "LICENSE", "data.bin"])
    assert (target / "data.bin").read_bytes() == FILES["package/data.bin"]
    assert (target / "LICENSE").read_bytes() == FILES["package/LICENSE"]
    assert fetched.size_bytes == len(FILES["package/data.bin"]) + len(FILES["package/LICENSE"])
    marker = json.loads((target / MARKER).read_text())
    assert (marker["name"], marker["version"], marker["integrity"]) == (NAME, VERSION, fetched.release.integrity)
    assert registry.downloads == 1
    assert _leftovers(target.parent) == [VERSION]


def test_a_tarball_altered_in_transit_is_refused_and_nothing_is_kept(registry, tmp_path):
    """The registry publishes one checksum, the server hands out other bytes: IntegrityError naming all of it."""
    # Setup
    genuine = _tarball(FILES)
    altered = _tarball({**FILES, "package/data.bin": b"evil" * 100})
    url = registry.publish(altered, integrity=_sri(genuine))
    target = tmp_path / "cache" / "tiny" / VERSION

    # Run
    with pytest.raises(IntegrityError) as caught:
        fetch_package(NAME, VERSION, target, ["data.bin"], registry=registry.url, progress=False)

    # Assert
    message = str(caught.value)
    assert f"{NAME}@{VERSION}" in message and url in message
    assert "does not match the registry's checksum" in message and "--registry" in message
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_a_corrupted_tarball_with_a_matching_checksum_is_a_clear_error_and_nothing_is_kept(registry, tmp_path):
    """A truncated gzip the registry itself published: the extraction fails, the target never appears."""
    broken = _tarball(FILES)[:300]
    registry.publish(broken)
    target = tmp_path / "cache" / "tiny" / VERSION
    with pytest.raises(RegistryError, match=f"{NAME}@{VERSION}: the tarball cannot be read"):
        fetch_package(NAME, VERSION, target, ["data.bin"], registry=registry.url, progress=False)
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_a_file_missing_from_the_tarball_is_named(registry, tmp_path):
    registry.publish(_tarball(FILES))
    target = tmp_path / "tiny"
    with pytest.raises(RegistryError, match=r"the tarball has no \['package/missing.mmdb'\]"):
        fetch_package(NAME, VERSION, target, ["data.bin", "missing.mmdb"], registry=registry.url, progress=False)
    assert not target.exists()


def test_an_unknown_version_is_a_404_naming_the_url(registry):
    registry.publish(_tarball(FILES))
    with pytest.raises(RegistryError, match=r"@fraudlab-test/tiny-db@9.9.9: .*HTTP 404 for http://127.0.0.1:\d+/"):
        resolve_release(NAME, "9.9.9", registry=registry.url)


def test_an_unreachable_registry_is_a_service_unavailable_error(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailableError, match=f"cannot reach the registry at {dead}/") as caught:
        fetch_package(NAME, VERSION, tmp_path / "tiny", ["data.bin"], registry=dead, progress=False, timeout=5)
    assert isinstance(caught.value, ServiceUnavailableError)
    assert not (tmp_path / "tiny").exists()


def test_two_fetches_at_once_download_once(registry, tmp_path):
    """The second waits on the lock, then finds the first one's copy: one download, the same files."""
    registry.publish(_tarball(FILES))
    target = tmp_path / "cache" / "tiny" / VERSION
    results = []

    def fetch() -> None:
        results.append(fetch_package(NAME, VERSION, target, ["data.bin"], registry=registry.url, progress=False))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 3
    assert sorted(r.downloaded for r in results) == [False, False, True]
    assert registry.downloads == 1


def test_an_incomplete_copy_is_fetched_again(registry, tmp_path):
    registry.publish(_tarball(FILES))
    target = tmp_path / "tiny"
    fetch_package(NAME, VERSION, target, ["data.bin"], registry=registry.url, progress=False)
    (target / "data.bin").unlink()
    fetched = fetch_package(NAME, VERSION, target, ["data.bin"], registry=registry.url, progress=False)
    assert fetched.downloaded and (target / "data.bin").read_bytes() == FILES["package/data.bin"]


def test_verify_integrity_accepts_the_strongest_of_several_and_sha1(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"payload")
    sha1 = "sha1-" + base64.b64encode(hashlib.sha1(b"payload").digest()).decode()
    verify_integrity(path, f"{sha1} {_sri(b'payload')}", what="x@1", url="http://example")
    verify_integrity(path, sha1, what="x@1", url="http://example")
    with pytest.raises(IntegrityError, match="x@1: the tarball downloaded from http://example does not match"):
        verify_integrity(path, f"{sha1} {_sri(b'other')}", what="x@1", url="http://example")
