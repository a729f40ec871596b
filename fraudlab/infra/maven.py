"""The external tools the local servers need: a Java runtime, and Maven to resolve jars from Maven Central.

Each lookup either returns the tool's path or raises
:class:`~fraudlab.exceptions.MissingToolError` saying what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from fraudlab import config
from fraudlab.exceptions import MissingToolError

__all__ = ["MIN_JAVA_MAJOR", "copy_dependencies", "java_executable", "parse_java_major", "require_java",
           "require_maven"]

MIN_JAVA_MAJOR = 17

_INSTALL_JAVA_HINT = (
    "install a Java 17+ runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "conda: `conda install -c conda-forge openjdk=17`) or point JAVA_HOME at one"
)
_INSTALL_MAVEN_HINT = (
    "install Apache Maven (Debian/Ubuntu: `apt-get install maven`; "
    "conda: `conda install -c conda-forge maven`)"
)


def java_executable(java_home: Path | None = None) -> str | None:
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def parse_java_major(version_output: str) -> int | None:
    """Read the major version from ``java -version`` output ("1.8.0_x" counts as 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def require_java(java_home: Path | None = None, *, needed_by: str | None = None) -> str:
    """Return the path of a Java 17+ runtime (``java_home``'s, else the one on PATH), or say what to install.

    ``needed_by`` names what is about to run on it (default: the Kafka broker), so the message says why.
    """
    needed_by = needed_by or f"Kafka {config.KAFKA_VERSION}"
    java = java_executable(java_home)
    if java is None:
        raise MissingToolError(f"`java` was not found on PATH; {needed_by} needs it: {_INSTALL_JAVA_HINT}.")
    completed = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = parse_java_major(completed.stderr + completed.stdout)
    if major is None or major < MIN_JAVA_MAJOR:
        raise MissingToolError(
            f"`{java}` is Java {major if major is not None else 'of unknown version'}; "
            f"{needed_by} needs Java {MIN_JAVA_MAJOR}+: {_INSTALL_JAVA_HINT}."
        )
    return java


def require_maven(*, resolving: str = "the Kafka jars") -> str:
    """Return the path of ``mvn``, or say exactly what to install; ``resolving`` names what it would fetch."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            f"`mvn` was not found on PATH; it resolves {resolving} from Maven Central once: {_INSTALL_MAVEN_HINT}."
        )
    return mvn


def copy_dependencies(mvn: str, pom: Path, output_dir: Path) -> subprocess.CompletedProcess[str]:
    """Let Maven copy the runtime dependencies of ``pom`` into ``output_dir``; the caller checks the outcome."""
    return subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={output_dir}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
