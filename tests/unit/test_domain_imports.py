"""The functional core stays pure: no module under domain/ imports the event contract, the stream or service
shells, or the libraries of Kafka, InfluxDB and validation (read from the source with `ast`, every import
statement counted, including those under `if TYPE_CHECKING:` and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
PACKAGE = "aromatrack.domain"
FORBIDDEN = (
    "aromatrack.schemas",
    "aromatrack.streams",
    "aromatrack.services",
    "faust",
    "aiokafka",
    "influxdb_client",
    "pydantic",
)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module an import statement in `source` (the module named `module`) names, relative ones resolved;
    for `from X import Y`, both X and X.Y (Y may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(name for name in names if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))


def test_the_check_sees_every_form_of_import():
    """The rule below can fail: each of these forms is caught."""
    sources = [
        "from aromatrack.schemas.events import Alert",
        "import aromatrack.streams.clinical",
        "from aromatrack import services",
        "from .. import schemas",
        "from ..schemas import events",
        "import faust, json",
        "from aiokafka.admin import AIOKafkaAdminClient",
        "import influxdb_client as influx",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pydantic import BaseModel",
        "def later():\n    import pydantic",
    ]
    for source in sources:
        assert forbidden(imported_modules(source, f"{PACKAGE}.engine")), source
    assert not forbidden(imported_modules("from . import rules\nfrom aromatrack.domain.events import Alert\nimport json",
                                          f"{PACKAGE}.engine"))


@pytest.mark.parametrize("path", sorted(DOMAIN.rglob("*.py")), ids=lambda path: path.name)
def test_the_domain_imports_nothing_from_the_shell_or_the_contract(path):
    module = ".".join([PACKAGE, *path.relative_to(DOMAIN).with_suffix("").parts])
    assert forbidden(imported_modules(path.read_text(), module)) == []


def test_the_domain_has_modules_to_check():
    assert {"engine.py", "rules.py", "events.py", "training_load.py"} <= {path.name for path in DOMAIN.rglob("*.py")}
