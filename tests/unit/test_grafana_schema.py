"""Every board validates against the dashboard JSON Schema generated from @grafana/schema of the Grafana we run.

The schema is committed (grafana/schema/generate.sh regenerates it with npm); these tests fail if a board
drifts from the model, if the schema stops rejecting malformed boards, or if compose moves to another Grafana
release than the one the schema was generated from.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from ..grafana_boards import DASHBOARDS, boards

SCHEMA_DIR = DASHBOARDS.parent / "schema"
SCHEMA = json.loads((SCHEMA_DIR / "dashboard.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def problems(board: dict) -> list[str]:
    return [f"{'/'.join(map(str, error.path))}: {error.message}" for error in VALIDATOR.iter_errors(board)]


@pytest.mark.parametrize("name", sorted(boards()))
def test_board_validates_against_the_grafana_dashboard_schema(name):
    assert problems(boards()[name]) == []


@pytest.mark.parametrize(
    "break_board",
    [
        lambda board: board["panels"][0]["gridPos"].update(h="tall"),
        lambda board: board.update(refresh=5),
        lambda board: board["templating"]["list"][0].update(type="not-a-variable-type"),
        lambda board: board.pop("schemaVersion"),
    ],
    ids=["gridPos height not a number", "refresh not a string", "unknown variable type", "no schemaVersion"],
)
def test_the_schema_rejects_malformed_boards(break_board):
    board = copy.deepcopy(boards()["coaching/coach.json"])
    break_board(board)
    assert problems(board)


def test_the_schema_comes_from_the_grafana_release_compose_runs():
    compose = yaml.safe_load((DASHBOARDS.parents[1] / "docker-compose.yml").read_text())
    image_version = compose["services"]["grafana"]["image"].rsplit(":", 1)[1]
    pinned = re.search(r"^GRAFANA_SCHEMA_VERSION=(\S+)$", (SCHEMA_DIR / "generate.sh").read_text(), re.M)[1]
    assert pinned == image_version
    assert SCHEMA["$comment"].endswith(f"@grafana/schema@{image_version}")
