"""Packages from the npm registry without npm: resolve a version, download its tarball, verify it, extract files.

The open GeoIP databases are published as npm packages (see ``docs/geoip.md``), and npm's registry is a plain
HTTP+JSON API: ``GET <registry>/<name>/<version>`` answers the version's document, whose ``dist.tarball`` is the
download and ``dist.integrity`` its Subresource-Integrity checksum (``sha512-<base64>``). So Python's urllib is
enough, and no Node.js install is asked of the user.

:func:`fetch_package` is safe to run from two processes at once (an exclusive file lock beside the target; the
second finds the first one's copy) and leaves nothing half-written: files are extracted into a temporary
directory that is renamed into place only after the checksum matched and every wanted file was found.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fraudlab import config
from fraudlab.exceptions import IntegrityError, RegistryError, RegistryUnavailableError
from fraudlab.infra.process import exclusive_lock

__all__ = ["FetchedPackage", "NpmRelease", "fetch_package", "resolve_release", "verify_integrity"]

#: Seconds to wait for the registry to answer (each request; a download may take longer in total).
TIMEOUT_S = 60.0
#: The file beside the extracted files that records what was fetched; its presence marks a complete copy.
MARKER = ".npm-package.json"
_CHUNK = 1 << 20
#: Subresource-Integrity algorithms hashlib knows, strongest first (npm publishes sha512, old packages sha1).
_SRI_ALGORITHMS = ("sha512", "sha384", "sha256", "sha1")


@dataclass(frozen=True)
class NpmRelease:
    """One version of a package as the registry describes it: where its tarball is and its checksum."""

    name: str
    version: str
    tarball: str
    integrity: str

    def describe(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class FetchedPackage:
    """Files of a package version extracted into ``directory``; ``downloaded`` is False when a copy was reused."""

    release: NpmRelease
    directory: Path
    files: tuple[Path, ...]
    downloaded: bool
    tarball_bytes: int
    seconds: float

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)


def _version_url(registry: str, name: str, version: str) -> str:
    """``<registry>/@scope%2Fname/<version>``: the scoped name's slash escaped, as npm's own client sends it."""
    return f"{registry.rstrip('/')}/{urllib.parse.quote(name, safe='@')}/{urllib.parse.quote(version, safe='')}"


def _open(url: str, what: str, timeout: float) -> IO[bytes]:
    """``urlopen`` with the registry's failures turned into errors that say what to do."""
    request = urllib.request.Request(url, headers={"Accept": "application/json, application/octet-stream",
                                                   "User-Agent": "fraudlab"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RegistryError(f"{what}: the registry has no such package or version (HTTP 404 for {url}); check "
                                "the name and version in fraudlab/config.py, or pass another --registry") from exc
        if exc.code in (401, 403):
            raise RegistryError(f"{what}: the registry refused access (HTTP {exc.code} for {url}); pass a registry "
                                "that serves public packages with --registry") from exc
        raise RegistryUnavailableError(f"{what}: the registry answered HTTP {exc.code} for {url}; retry later, or "
                                       "pass another --registry (a mirror)") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailableError(f"{what}: cannot reach the registry at {url} ({reason}); check the network "
                                       "or proxy, or pass a reachable --registry") from exc


def resolve_release(name: str, version: str, *, registry: str = config.NPM_REGISTRY,
                    timeout: float = TIMEOUT_S) -> NpmRelease:
    """Ask the registry where ``name@version``'s tarball is and what its checksum must be."""
    what = f"{name}@{version}"
    url = _version_url(registry, name, version)
    with _open(url, what, timeout) as response:
        try:
            document: dict[str, Any] = json.load(response)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{what}: {url} did not answer JSON; is {registry} an npm registry?") from exc
    dist = document.get("dist") if isinstance(document, dict) else None
    if not isinstance(dist, dict) or not dist.get("tarball"):
        raise RegistryError(f"{what}: the registry's answer at {url} has no dist.tarball; is {registry} an npm "
                            "registry?")
    integrity = dist.get("integrity") or (f"sha1-{base64.b64encode(bytes.fromhex(dist['shasum'])).decode()}"
                                          if dist.get("shasum") else "")
    if not integrity:
        raise RegistryError(f"{what}: the registry publishes no checksum (dist.integrity, dist.shasum) at {url}; "
                            "fraudlab does not install unverifiable downloads")
    return NpmRelease(name=name, version=version, tarball=dist["tarball"], integrity=integrity)


def _strongest(integrity: str) -> tuple[str, str]:
    """The strongest (algorithm, base64 digest) of an SRI string, which may list several separated by spaces."""
    entries = dict(part.split("-", 1) for part in integrity.split() if "-" in part)
    for algorithm in _SRI_ALGORITHMS:
        if algorithm in entries:
            return algorithm, entries[algorithm].split("?", 1)[0]
    raise RegistryError(f"unsupported integrity {integrity!r}: expected one of {', '.join(_SRI_ALGORITHMS)}")


def verify_integrity(path: Path, integrity: str, *, what: str, url: str) -> None:
    """Raise :class:`IntegrityError` unless the file's digest is the one ``integrity`` (SRI) names."""
    algorithm, expected = _strongest(integrity)
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected:
        raise IntegrityError(f"{what}: the tarball downloaded from {url} does not match the registry's checksum "
                             f"({algorithm} {actual[:16]}... instead of {expected[:16]}...); nothing was kept. A "
                             "proxy or mirror served a damaged or altered file: retry, or pass another --registry")


def _download(release: NpmRelease, target: Path, *, progress: bool, timeout: float) -> int:
    """Stream the tarball into ``target`` with a byte progress bar; returns its size."""
    from tqdm.auto import tqdm

    with _open(release.tarball, release.describe(), timeout) as response, target.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                  desc=release.describe(), leave=True) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
    return target.stat().st_size


def _extract(tarball: Path, members: Sequence[str], into: Path, what: str) -> list[Path]:
    """Copy the named regular files (paths inside the package, like ``package/README.md``) into ``into``, flat.

    Only the named members are read, each written under its base name, so a hostile tarball can neither write
    outside ``into`` (no ``..``, no links followed) nor fill the disk with files nobody asked for.
    """
    wanted = {member if member.startswith("package/") else f"package/{member}": member for member in members}
    written: list[Path] = []
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for info in archive:
                if info.name not in wanted or not info.isfile():
                    continue
                source = archive.extractfile(info)
                assert source is not None  # a regular file always has a stream
                path = into / Path(info.name).name
                with source, path.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                written.append(path)
                del wanted[info.name]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RegistryError(f"{what}: the tarball cannot be read ({exc}); delete it and fetch again") from exc
    if wanted:
        raise RegistryError(f"{what}: the tarball has no {sorted(wanted)}; the package's layout changed, so "
                            "fraudlab/config.py pins a version this fraudlab does not know")
    return written


def _reuse(directory: Path, release_name: str, version: str, members: Sequence[str]) -> FetchedPackage | None:
    """The copy already in ``directory`` when its marker says it is this version with every wanted file."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    recorded = json.loads(marker.read_text())
    files = tuple(directory / Path(member).name for member in members)
    if recorded.get("name") != release_name or recorded.get("version") != version or \
            not all(path.is_file() for path in files):
        return None
    release = NpmRelease(name=release_name, version=version, tarball=recorded.get("tarball", ""),
                         integrity=recorded.get("integrity", ""))
    return FetchedPackage(release=release, directory=directory, files=files, downloaded=False,
                          tarball_bytes=int(recorded.get("tarball_bytes", 0)), seconds=0.0)


def fetch_package(name: str, version: str, directory: Path, members: Sequence[str], *,
                  registry: str = config.NPM_REGISTRY, progress: bool = True,
                  timeout: float = TIMEOUT_S) -> FetchedPackage:
    """Files ``members`` of ``name@version`` in ``directory``: reused when there, else downloaded and verified.

    ``members`` are paths inside the package (``package/`` may be left out) and land in ``directory`` under their
    base names, with a marker file recording the release. The download goes to a temporary file beside
    ``directory``, is checked against ``dist.integrity`` and extracted into a temporary directory that is renamed
    to ``directory`` at the end; on any failure both are removed, so ``directory`` either holds a complete,
    verified copy or does not exist. Two processes fetching the same directory wait for each other.
    """
    directory = Path(directory)
    reused = _reuse(directory, name, version, members)
    if reused is not None:
        return reused
    directory.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(directory.parent / f".{directory.name}.lock"):
        reused = _reuse(directory, name, version, members)  # another process may have fetched it while we waited
        if reused is not None:
            return reused
        started = time.perf_counter()
        release = resolve_release(name, version, registry=registry, timeout=timeout)
        with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
            tarball = Path(tmp) / "package.tgz"
            size = _download(release, tarball, progress=progress, timeout=timeout)
            verify_integrity(tarball, release.integrity, what=release.describe(), url=release.tarball)
            staging = Path(tmp) / "files"
            staging.mkdir()
            _extract(tarball, members, staging, release.describe())
            (staging / MARKER).write_text(json.dumps({
                "name": name, "version": version, "tarball": release.tarball, "integrity": release.integrity,
                "tarball_bytes": size, "registry": registry, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
            }, indent=2) + "\n")
            if directory.exists():  # an incomplete copy of another run (no marker, or files missing)
                shutil.rmtree(directory)
            staging.rename(directory)
        files = tuple(directory / Path(member).name for member in members)
        return FetchedPackage(release=release, directory=directory, files=files, downloaded=True,
                              tarball_bytes=size, seconds=time.perf_counter() - started)
