"""The worker's agent set: importing this module registers every agent on the faust app."""

from aromatrack.streams import clinical  # noqa: F401  (registers the clinical agent)
from aromatrack.streams import health  # noqa: F401  (registers the /livez and /readyz routes)
from aromatrack.streams import ingest  # noqa: F401  (registers the ingest agents)
from aromatrack.streams import workouts  # noqa: F401  (registers the workout agents)
from aromatrack.streams.app import app

__all__ = ["app"]
