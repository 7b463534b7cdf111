"""The worker's agent set: importing this module registers every agent on the faust app."""

from aromatrack.streams import ingest  # noqa: F401  (registers the ingest agents)
from aromatrack.streams.app import app

__all__ = ["app"]
