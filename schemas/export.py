"""Export the event contract as JSON Schema files, one per event type plus the alert output."""

from __future__ import annotations

import json
from pathlib import Path

from .events import ALERT_SCHEMA_VERSION, EVENT_MODELS, SCHEMA_VERSION, Alert

JSON_DIR = Path(__file__).resolve().parent / "json"


def json_schemas() -> dict[str, dict]:
    """File name -> JSON Schema for every event type and for `alert` (each named by its own contract version;
    the files of earlier versions stay committed for consumers that have not moved on)."""
    models = {name: (model, SCHEMA_VERSION) for name, model in EVENT_MODELS.items()}
    models["alert"] = (Alert, ALERT_SCHEMA_VERSION)
    return {
        f"{name}.v{version}.schema.json": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"aromatrack/{name}/v{version}",
            **model.model_json_schema(),
        }
        for name, (model, version) in models.items()
    }


def write_json_schemas(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        path = directory / filename
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
