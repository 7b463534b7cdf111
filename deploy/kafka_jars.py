"""The Apache Kafka broker's jars, resolved from Maven Central by `deploy/kafka/pom.xml` into a cache outside git.

The cache (`~/.cache/aromatrack/kafka-<version>/`, or under $XDG_CACHE_HOME, or $AROMATRACK_KAFKA_CACHE) is shared
by every clone on the machine and used offline once resolved: a `.resolved` file holding the pom's hash marks
a complete copy, so a changed pom resolves again and an interrupted resolution never counts. Resolution needs
the network, so `make install` runs it (`python -m aromatrack.deploy.kafka_jars`) before anything enters a
network namespace; `aromatrack stack up` only resolves when the cache is missing. Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"


class JarsError(RuntimeError):
    """The jars are not cached and could not be resolved; the message says what to do."""


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise JarsError(f"{POM} has no <kafka.version> property")
    return match.group(1)


def cache_root() -> Path:
    if "AROMATRACK_KAFKA_CACHE" in os.environ:
        return Path(os.environ["AROMATRACK_KAFKA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aromatrack"


def kafka_home() -> Path:
    return cache_root() / f"kafka-{kafka_version()}"


def _pom_hash() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def cached_libs() -> Path | None:
    """The directory of jars if a complete copy for this pom is cached, else None."""
    home = kafka_home()
    marker = home / ".resolved"
    if marker.is_file() and marker.read_text().strip() == _pom_hash():
        return home / "libs"
    return None


def once_in_cache(lock_name: str, cached: Callable[[], Path | None], make: Callable[[Path], Path]) -> Path:
    """What `cached()` finds, else `make(cache root)` under a lock file of the cache, so that several clones
    fetching at once make it once (the Kafka jars here, Helm in deploy/helm_tool.py)."""
    found = cached()
    if found:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return cached() or make(root)


def resolve() -> Path:
    """The jars' directory, resolving them with Maven first when they are not cached (needs Maven Central)."""
    return once_in_cache(".lock", cached_libs, _resolve_into)


def _resolve_into(root: Path) -> Path:
    """Resolve the jars with Maven into the cache (the caller holds its lock)."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise JarsError(
            "Maven (mvn) is not installed and the Kafka jars are not cached: run `make install` "
            "(it installs Debian's maven), or `apt-get install maven`"
        )
    home = kafka_home()
    with tempfile.TemporaryDirectory(dir=root, prefix=".resolving-") as work:
        print(f"resolving Apache Kafka {kafka_version()} jars from Maven Central into {home} ...", flush=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={work}/libs"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            raise JarsError(
                f"mvn could not resolve {POM} (Maven Central unreachable? run it outside a network namespace):\n"
                + result.stdout[-3000:]
            )
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        os.rename(f"{work}/libs", home / "libs")
    (home / ".resolved").write_text(_pom_hash() + "\n")
    return home / "libs"


if __name__ == "__main__":
    try:
        print(resolve())
    except JarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
