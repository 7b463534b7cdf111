"""Helm, built from the Go module proxy by `go install helm.sh/helm/v3/cmd/helm@<HELM_VERSION>` into a cache
outside git (`~/.cache/aromatrack/helm-<version>/bin/helm`, beside the Kafka jars), shared by every clone and
used offline once built. `make install` runs this (`python -m aromatrack.deploy.helm_tool`) before anything
enters a network namespace; the chart tests only look for the binary. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aromatrack.deploy.kafka_jars import cache_root, once_in_cache

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"
# Debian's Go is not on every machine; the Go toolchain of this machine kind lives here.
GO_FALLBACK = Path("/usr/local/go/bin/go")


class HelmError(RuntimeError):
    """Helm is not built and could not be; the message says what to do."""


def helm_home() -> Path:
    return cache_root() / f"helm-{HELM_VERSION}"


def cached_helm() -> Path | None:
    """The helm binary if a complete build of HELM_VERSION is cached, else None."""
    binary = helm_home() / "bin" / "helm"
    return binary if (helm_home() / ".installed").is_file() and binary.is_file() else None


def install() -> Path:
    """The helm binary, building it with `go install` first when it is not cached (needs the Go module proxy;
    the first build takes minutes on two cores)."""
    return once_in_cache(".helm.lock", cached_helm, _build_into)


def _build_into(root: Path) -> Path:
    """Build Helm with Go into the cache (the caller holds its lock)."""
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
    if not go:
        raise HelmError("Go is not installed: Helm is built from the Go module proxy with `go install` "
                        "(install Go 1.24 or later, then `make install`)")
    home = helm_home()
    with tempfile.TemporaryDirectory(dir=root, prefix=".building-helm-") as work:
        print(f"building Helm {HELM_VERSION} from the Go module proxy into {home} ...", flush=True)
        result = subprocess.run(
            [go, "install", f"{HELM_MODULE}@{HELM_VERSION}"],
            env={**os.environ, "GOBIN": f"{work}/bin", "CGO_ENABLED": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if result.returncode != 0:
            raise HelmError("go install of Helm failed (the Go module proxy unreachable? run it outside a "
                            "network namespace):\n" + result.stdout[-3000:])
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        os.rename(f"{work}/bin", home / "bin")
    (home / ".installed").write_text(HELM_VERSION + "\n")
    return home / "bin" / "helm"

if __name__ == "__main__":
    try:
        print(install())
    except HelmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
