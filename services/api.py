"""The HTTP ingest API (`aromatrack api`): athletes' apps, scales, labs and clinicians' front door.

Every accepted event is validated by `parse_event` (the one contract) and acknowledged by Kafka (acks=all)
before the answer 202. A batch is all-or-nothing: one bad item refuses the request and nothing is produced.
Retries never create a second event: each event's stable id is claimed in the store before producing, and an
`Idempotency-Key` replays the first answer. Logs carry ids, types and counts only, never values or names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, Sequence

from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import fhir
from aromatrack.schemas import series as S
from aromatrack.schemas.events import EVENT_MODELS, EventBase, EventError, load_json, parse_event
from aromatrack.services.auth import Access, Principal, Role, allowed, authenticate
from aromatrack.services.health import add_health_routes
from aromatrack.services.readings import ATHLETE_ID_PATTERN, series_rows
from aromatrack.services.store import UNAVAILABLE, AsyncStore, InboxAlert, Store, StoreError
from aromatrack.services.withings import WithingsError, scale_readings
from aromatrack.streams import fit
from aromatrack.streams.influx import InfluxError, SeriesStore
from aromatrack.streams.producer import MAX_MESSAGE_BYTES

log = logging.getLogger("aromatrack.api")
access_log = logging.getLogger("aromatrack.access")
_ATHLETE_ID = re.compile(ATHLETE_ID_PATTERN)

MAX_JSON_BYTES = 1_000_000
# A FIT upload travels gzipped and base64-encoded inside one Kafka message, with room for the envelope.
MAX_FIT_B64 = MAX_MESSAGE_BYTES - 4096
MAX_BATCH = 1000
MAX_NOTE_CHARS = 2000

# Clinicians post labs and doses for their patients; only athletes post everything else.
CLINICAL_TYPES = frozenset({"lab.result", "dose.change"})
# Route suffix -> event type for the JSON event routes (single object or a list).
EVENT_ROUTES = {
    "scale-readings": "scale.reading",
    "labs": "lab.result",
    "doses": "dose.change",
    "phases": "protocol.phase",
    "symptoms": "symptom.log",
    "workouts": "workout.summary",
}
# Read route -> (access needed, series returned).
READ_ROUTES: dict[str, tuple[Access, tuple[S.Series, ...]]] = {
    "training": (Access.TRAINING, (S.TRAINING_LOAD_DAILY, S.WORKOUT)),
    "body-composition": (Access.BODY, (S.BODY_COMPOSITION, S.BODY_FAT_TREND)),
    "labs": (Access.LABS, (S.LAB,)),
    "doses": (Access.DOSES, (S.DOSE,)),
}


# What a sink raises when the broker, not the request, is at fault: the only failures answered 503 (retry).
BROKER_FAILURES = (KafkaError, OSError, asyncio.TimeoutError)


class EventSink(Protocol):
    async def send_all(self, events: Sequence[EventBase]) -> int:
        """Produce and wait for the broker's acknowledgement; raises one of BROKER_FAILURES if it fails."""


@dataclass
class Services:
    store: Store
    sink: EventSink | None = None
    influx: SeriesStore | None = None
    # what the async handlers await: the store's calls off the event loop
    async_store: AsyncStore = field(init=False)

    def __post_init__(self) -> None:
        self.async_store = AsyncStore(self.store)


class Problem(HTTPException):
    """A 4xx whose body lists each bad field and its problem."""

    def __init__(self, status: int, problems: list[tuple[str, str]]):
        super().__init__(status, [{"field": field, "problem": problem} for field, problem in problems])


def _problems(message: str, prefix: str = "") -> list[tuple[str, str]]:
    """Split an `EventError`/`WithingsError` message ("field: problem; ...") into (field, problem) pairs."""
    pairs = []
    for part in message.split("; "):
        field, sep, problem = part.partition(": ")
        pairs.append((prefix + field, problem) if sep else (prefix + "body", part))
    return pairs


AthleteId = Path(..., pattern=ATHLETE_ID_PATTERN, description="Opaque athlete id (the athlete's user id).")
bearer = HTTPBearer(auto_error=False, description="A per-user API token from `aromatrack users add`.")


def services(request: Request) -> Services:
    return request.app.state.services


@dataclass(frozen=True)
class Limits:
    """Per-process request limits: each token's sustained rate and burst, and how long a body may take."""

    requests_per_s: float = 20.0
    burst: int = 200
    body_timeout_s: float = 30.0


class RateLimiter:
    """A token bucket per API token, in memory (each API process limits on its own)."""

    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when)

    def wait_s(self, key: str, limits: Limits, now: float) -> float:
        """0 if the request may go now (and it is counted), else the seconds until it may."""
        tokens, then = self._buckets.get(key, (float(limits.burst), now))
        tokens = min(float(limits.burst), tokens + (now - then) * limits.requests_per_s)
        if tokens < 1:
            return (1 - tokens) / limits.requests_per_s
        if len(self._buckets) >= self.MAX_BUCKETS:
            self._buckets.clear()  # forgetting buckets only ever lets requests through
        self._buckets[key] = (tokens - 1, now)
        return 0.0


def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    deps: Services = Depends(services),
) -> Principal:
    """The caller, from their bearer token (`auth.authenticate`), within their token's rate limit. A plain
    function: FastAPI runs it on its thread pool, so the store's lookup does not hold the event loop."""
    found = authenticate(deps.store, credentials.credentials) if credentials else None
    if found is None:
        raise HTTPException(401, "missing or unknown API token", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = found  # for the access log
    wait = request.app.state.rate_limiter.wait_s(found.token_id, request.app.state.limits, time.monotonic())
    if wait:
        raise HTTPException(429, "too many requests with this token; slow down",
                            headers={"Retry-After": str(math.ceil(wait))})
    return found


async def require(deps: Services, who: Principal, access: Access, athlete_id: str | None) -> None:
    """403 unless `who` has `access` to the athlete's data (None: no athlete, never allowed)."""
    care_team = (athlete_id is not None and who.role is not Role.ATHLETE
                 and await deps.async_store.on_care_team(athlete_id, who.user_id))
    if athlete_id is None or not allowed(who, access, athlete_id, is_care_team=care_team):
        log.info("denied %s %s access for %s", who.role.value, access.value, who.user_id)
        raise HTTPException(403, f"a {who.role.value} may not {access.value} for this athlete")


async def alert_for(deps: Services, who: Principal, alert_id: str, access: Access) -> InboxAlert:
    """The alert, if `who` may have `access` to it, else 403. An unknown alert is answered as another patient's
    is, so the answer does not tell which ids exist."""
    found = await deps.async_store.alert(alert_id)
    await require(deps, who, access, found.alert.athlete_id if found else None)
    return found


class Acknowledgement(BaseModel):
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="Free text kept with the acknowledgement.")


async def acknowledge(deps: Services, who: Principal, alert_id: str, note: str | None) -> InboxAlert:
    """Record who acknowledged the alert and when, with their note; reminders stop. The first acknowledgement
    is kept. The API route and the web inbox both acknowledge through here."""
    await alert_for(deps, who, alert_id, Access.ACKNOWLEDGE)
    acknowledged = await deps.async_store.acknowledge(alert_id, who.user_id, (note or "").strip() or None)
    log.info("alert %s acknowledged by %s", alert_id, who.user_id)
    return acknowledged


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed), and with
    408 when it takes longer than the body timeout (a slow sender would hold the connection forever)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over the {limit} byte limit")
    chunks, size = [], 0
    timeout_s = request.app.state.limits.body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"body over the {limit} byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    """The body as JSON within the event contract's limits (depth, 64-bit integers, finite numbers, Unicode)."""
    try:
        return load_json(raw)
    except EventError as exc:
        raise Problem(400, _problems(str(exc))) from None


def validate_items(items: list[Any], event_type: str, athlete_id: str) -> list[EventBase]:
    """Validate every item, filling in type and athlete; 422 listing every bad field of every item."""
    if not items:
        raise Problem(422, [("body", "no events")])
    if len(items) > MAX_BATCH:
        raise Problem(413, [("body", f"more than {MAX_BATCH} events in one request")])
    events, problems = [], []
    for index, item in enumerate(items):
        prefix = f"[{index}]." if len(items) > 1 else ""
        if not isinstance(item, dict):
            problems.append((prefix + "body", "an event must be a JSON object"))
            continue
        if item.get("athlete_id", athlete_id) != athlete_id:
            problems.append((prefix + "athlete_id", "does not match the athlete in the path"))
            continue
        if item.get("type", event_type) != event_type:
            problems.append((prefix + "type", f"this route takes {event_type} events"))
            continue
        try:
            events.append(parse_event({**item, "type": event_type, "athlete_id": athlete_id}))
        except EventError as exc:
            problems.extend(_problems(str(exc), prefix))
    if problems:
        raise Problem(422, problems)
    return events


async def accept(
    deps: Services, who: Principal, athlete_id: str, events: list[EventBase], fingerprint: str,
    idempotency_key: str | None, extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Produce the athlete's events not produced before, wait for Kafka's acknowledgement, then answer 202."""
    scope = json.dumps([who.user_id, idempotency_key]) if idempotency_key else None
    if scope:
        try:
            replay = await deps.async_store.idempotent_response(scope, fingerprint)
        except StoreError as exc:
            raise Problem(422, [("Idempotency-Key", str(exc))]) from None
        if replay is not None:
            return JSONResponse(replay, status_code=202, headers={"Idempotent-Replayed": "true"})
    by_id = {event.event_id: event for event in events}
    try:
        claimed, in_flight, duplicates = await deps.async_store.claim_events(athlete_id, list(by_id))
    except StoreError as exc:
        raise Problem(422, [("event_id", str(exc))]) from None
    if in_flight:  # the client retries the whole batch: what this request claimed must be free for that retry
        await deps.async_store.settle_events(athlete_id, claimed, produced=False)
        raise HTTPException(409, "the same event is being accepted by a concurrent request; retry shortly")
    if claimed:
        if deps.sink is None:
            await deps.async_store.settle_events(athlete_id, claimed, produced=False)
            raise HTTPException(503, "the event broker is not connected")
        try:
            await deps.sink.send_all([by_id[event_id] for event_id in claimed])
        except BaseException as exc:  # release the claims so the client's retry can succeed
            await deps.async_store.settle_events(athlete_id, claimed, produced=False)
            if not isinstance(exc, BROKER_FAILURES):
                raise
            log.warning("produce failed (%s); %d events not accepted", type(exc).__name__, len(claimed))
            raise HTTPException(503, "the event broker did not acknowledge; retry") from None
        await deps.async_store.settle_events(athlete_id, claimed, produced=True)
    body = {"accepted": claimed, "duplicates": duplicates, **(extra or {})}
    if scope:
        await deps.async_store.remember_response(scope, fingerprint, body)
    log.info("accepted %d new and %d duplicate %s events from %s", len(claimed), len(duplicates),
             events[0].type, who.role.value)
    return JSONResponse(body, status_code=202)


def _fingerprint(route: str, athlete_id: str, raw: bytes) -> str:
    return hashlib.sha256(f"{route}\x00{athlete_id}\x00".encode() + raw).hexdigest()


def _event_body_schema(event_type: str) -> dict[str, Any]:
    """The OpenAPI request body: one event (type and athlete_id come from the route) or a list of them."""
    schema = EVENT_MODELS[event_type].model_json_schema()
    schema["required"] = [name for name in schema.get("required", []) if name not in ("type", "athlete_id")]
    one = {k: v for k, v in schema.items() if k != "$defs"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [one, {"type": "array", "items": one,
                                                                          "minItems": 1, "maxItems": MAX_BATCH}]}}},
        }
    }


ACCEPTED = {202: {"description": "Accepted: on Kafka (acks=all). `accepted` lists new event ids, `duplicates` "
                  "ids produced by an earlier request."}}
ERRORS = {
    401: {"description": "Missing, unknown, expired or revoked token."},
    403: {"description": "The role may not do this for this athlete."},
    408: {"description": "The body did not arrive within the body timeout."},
    409: {"description": "The same event is being accepted by a concurrent request; retry shortly."},
    413: {"description": "Body too large."},
    422: {"description": "Invalid input: `detail` lists each field and its problem."},
    429: {"description": "Over this token's rate limit; retry after `Retry-After` seconds."},
    503: {"description": "Kafka did not acknowledge; nothing was accepted, retry."},
}


def api_log_config() -> dict[str, Any]:
    """Logging for `aromatrack api`: the audit lines (denials, acknowledgements) and one access line per
    request, at INFO on stderr. Lines name ids, roles, routes and statuses, never values, names or queries;
    uvicorn's own access log (full paths with queries) stays off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "aromatrack": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "uvicorn": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


async def log_access(request: Request, call_next) -> Any:
    """One access line per request: method, route template, athlete id, status, caller and time."""
    started = time.monotonic()
    response = await call_next(request)
    route = request.scope.get("route")
    who: Principal | None = getattr(request.state, "principal", None)
    athlete = request.path_params.get("athlete_id", "-")
    if athlete != "-" and not _ATHLETE_ID.fullmatch(athlete):
        athlete = "?"  # not an id (it failed validation): its text stays out of the log
    access_log.info("%s %s athlete=%s %d user=%s role=%s token=%s %.0f ms", request.method,
                    getattr(route, "path", "-"), athlete, response.status_code, who.user_id if who else "-",
                    who.role.value if who else "-", who.token_id if who else "-", (time.monotonic() - started) * 1000)
    return response


def create_app(deps: Services | None = None, settings: Settings | None = None, limits: Limits = Limits()) -> FastAPI:
    """The app over given services (tests), or over the settings' Kafka and InfluxDB (opened at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings is None:
            yield
            return
        from aromatrack.streams.producer import EventProducer

        async with EventProducer(settings.kafka_bootstrap) as producer, influx_access.reader_store(
            settings, max_attempts=2
        ) as influx:
            app.state.services.sink = producer
            app.state.services.influx = influx
            pruning = asyncio.create_task(prune_hourly(app.state.services.async_store))
            try:
                yield
            finally:
                pruning.cancel()

    app = FastAPI(
        title="Aromatrack API",
        version="1",
        description="Ingest training, scale, lab, dose, phase and symptom events; read an athlete's data and "
        "alerts by role. Never changes or recommends a dose.",
        lifespan=lifespan,
        redirect_slashes=False,  # its redirects echoed the Host header into `location`
        docs_url=None,  # served by services.web from local files instead of a CDN
        redoc_url=None,
    )
    app.state.services = deps or Services(Store(settings.store_url))
    app.state.limits = limits
    app.state.rate_limiter = RateLimiter()
    app.middleware("http")(log_access)
    from aromatrack.services.web import add_web_pages  # imported here: the pages use this module's access checks

    add_web_pages(app)
    add_health_routes(app)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "problem": e["msg"]}
                    for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(problems)}, status_code=422)

    async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable (%s); answered 503", type(exc).__name__)  # its text may name the host
        return JSONResponse({"detail": "the store is not available; retry"}, status_code=503,
                            headers={"Retry-After": "1"})

    for failure in UNAVAILABLE:
        app.add_exception_handler(failure, _store_unavailable)

    def add_event_route(suffix: str, event_type: str) -> None:
        async def post_events(
            request: Request,
            athlete_id: str = AthleteId,
            idempotency_key: str | None = Header(None, max_length=200),
            who: Principal = Depends(principal),
            deps: Services = Depends(services),
        ) -> JSONResponse:
            access = Access.WRITE_CLINICAL if event_type in CLINICAL_TYPES else Access.WRITE
            await require(deps, who, access, athlete_id)
            raw = await read_limited(request, MAX_JSON_BYTES)
            document = _json(raw)
            items = document if isinstance(document, list) else [document]
            events = validate_items(items, event_type, athlete_id)
            return await accept(deps, who, athlete_id, events, _fingerprint(suffix, athlete_id, raw), idempotency_key)

        app.post(
            f"/v1/athletes/{{athlete_id}}/{suffix}",
            status_code=202,
            summary=f"Post {event_type} events (one object or a list)",
            operation_id=f"post_{suffix.replace('-', '_')}",
            responses={**ACCEPTED, **ERRORS},
            openapi_extra=_event_body_schema(event_type),
            tags=["ingest"],
        )(post_events)

    for suffix, event_type in EVENT_ROUTES.items():
        add_event_route(suffix, event_type)

    @app.post(
        "/v1/athletes/{athlete_id}/workouts/fit",
        status_code=202,
        responses={**ACCEPTED, **ERRORS},
        tags=["ingest"],
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def upload_fit(
        request: Request,
        athlete_id: str = AthleteId,
        time: datetime | None = Query(None, description="Workout start; default: when received. Decoding the "
                                      "file later gives the exact start."),
        filename: str | None = Query(None, max_length=255),
        idempotency_key: str | None = Header(None, max_length=200),
        who: Principal = Depends(principal),
        deps: Services = Depends(services),
    ) -> JSONResponse:
        """Upload a FIT file as the raw body; it becomes one `workout.fit` event (decoded by the stream)."""
        await require(deps, who, Access.WRITE, athlete_id)
        raw = await read_limited(request, fit.MAX_FIT_BYTES)
        if not raw:
            raise Problem(422, [("body", "empty file")])
        when = time or datetime.now(timezone.utc)
        if when.tzinfo is None:
            raise Problem(422, [("time", "needs a UTC offset or Z")])
        # Gzipped on the wire as the CLI sends it (FIT compresses 3-5x), unless the client already did.
        fit_b64 = base64.b64encode(raw).decode() if raw[:2] == b"\x1f\x8b" else fit.encode_fit(raw)
        if len(fit_b64) > MAX_FIT_B64:
            raise Problem(413, [("body", f"the file compresses to over {MAX_FIT_B64 * 3 // 4} bytes, more than one "
                                         "Kafka message holds; split the activity")])
        item = {"time": when.isoformat(), "fit_b64": fit_b64, **({"filename": filename} if filename else {})}
        [event] = validate_items([item], "workout.fit", athlete_id)
        try:
            data = fit.fit_payload(event)  # the worker's own bounds, so what is accepted here decodes there
        except EventError as exc:
            raise Problem(422, _problems(str(exc))) from None
        # The file's content names the event, so re-uploading the same file (plain or gzipped) is a duplicate.
        event = event.model_copy(update={"event_id": "fit-" + fit.workout_id(athlete_id, data)})
        return await accept(deps, who, athlete_id, [event], _fingerprint("fit", athlete_id, raw), idempotency_key)

    @app.post(
        "/v1/athletes/{athlete_id}/scale-readings/withings",
        status_code=202,
        responses={**ACCEPTED, **ERRORS},
        tags=["ingest"],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["body"],
            "properties": {"status": {"type": "integer"}, "body": {
                "type": "object", "required": ["measuregrps"],
                "properties": {"measuregrps": {"type": "array", "items": {
                    "type": "object", "required": ["date", "measures"],
                    "properties": {"grpid": {"type": "integer"}, "date": {"type": "integer"},
                                   "category": {"type": "integer"}, "deviceid": {"type": "string"},
                                   "measures": {"type": "array", "items": {
                                       "type": "object", "required": ["value", "type", "unit"],
                                       "properties": {"value": {"type": "integer"}, "type": {"type": "integer"},
                                                      "unit": {"type": "integer"}}}}}}}}}}}}}}},
    )
    async def withings_measures(
        request: Request,
        athlete_id: str = AthleteId,
        idempotency_key: str | None = Header(None, max_length=200),
        who: Principal = Depends(principal),
        deps: Services = Depends(services),
    ) -> JSONResponse:
        """Withings "Measure - Getmeas" body, forwarded unchanged; groups become `scale.reading` events."""
        await require(deps, who, Access.WRITE, athlete_id)
        raw = await read_limited(request, MAX_JSON_BYTES)
        try:
            items, skipped = scale_readings(_json(raw), athlete_id)
        except WithingsError as exc:
            raise Problem(422, _problems(str(exc))) from None
        if not items:
            raise Problem(422, [("body.measuregrps", "no group with both weight and body fat")])
        events = validate_items(items, "scale.reading", athlete_id)
        extra = {"skipped": [{"grpid": s.grpid, "reason": s.reason} for s in skipped]}
        return await accept(deps, who, athlete_id, events, _fingerprint("withings", athlete_id, raw), idempotency_key,
                            extra)

    add_fhir_route(app)

    def add_read_route(suffix: str, access: Access, wanted: tuple[S.Series, ...]) -> None:
        async def read_series(
            athlete_id: str = AthleteId,
            days: int = Query(90, ge=1, le=3660),
            who: Principal = Depends(principal),
            deps: Services = Depends(services),
        ) -> dict[str, list[dict[str, Any]]]:
            await require(deps, who, access, athlete_id)
            if deps.influx is None:
                raise HTTPException(503, "InfluxDB is not connected")
            since = datetime.now(timezone.utc) - timedelta(days=days)
            try:
                return {s.measurement: await series_rows(deps.influx, s, athlete_id, since) for s in wanted}
            except InfluxError:
                raise HTTPException(503, "InfluxDB did not answer; retry") from None

        app.get(f"/v1/athletes/{{athlete_id}}/{suffix}", summary=f"Read {suffix} series",
                operation_id=f"read_{suffix.replace('-', '_')}", responses=ERRORS, tags=["read"])(read_series)

    for suffix, (access, wanted) in READ_ROUTES.items():
        add_read_route(suffix, access, wanted)

    @app.get("/v1/athletes/{athlete_id}/alerts", responses=ERRORS, tags=["alerts"])
    async def list_alerts(
        athlete_id: str = AthleteId,
        open_only: bool = Query(False, alias="open"),
        who: Principal = Depends(principal),
        deps: Services = Depends(services),
    ) -> list[dict[str, Any]]:
        """The athlete's alerts (the notifier fills this inbox from the alerts topic), oldest first."""
        await require(deps, who, Access.ALERTS, athlete_id)
        return [_inbox_json(item) for item in await deps.async_store.alerts_for(athlete_id, open_only=open_only)]

    @app.post("/v1/alerts/{alert_id}/acknowledge", responses=ERRORS, tags=["alerts"])
    async def acknowledge_alert(
        alert_id: str = Path(..., max_length=128),
        body: Acknowledgement | None = None,
        who: Principal = Depends(principal),
        deps: Services = Depends(services),
    ) -> dict[str, Any]:
        """Record that the clinician has seen the alert, with an optional note; it is not re-notified after this."""
        return _inbox_json(await acknowledge(deps, who, alert_id, body.note if body else None))

    return app


def add_fhir_route(app: FastAPI) -> None:
    @app.post("/v1/athletes/{athlete_id}/labs/fhir", status_code=202, responses={**ACCEPTED, **ERRORS},
              tags=["ingest"], openapi_extra={"requestBody": {"required": True, "content": {
                  "application/fhir+json": {"schema": {"type": "object"}},
                  "application/json": {"schema": {"type": "object"}}}}})
    async def post_fhir_labs(
        request: Request,
        athlete_id: str = AthleteId,
        idempotency_key: str | None = Header(None, max_length=200),
        who: Principal = Depends(principal),
        deps: Services = Depends(services),
    ) -> JSONResponse:
        """A FHIR R4 Observation or Bundle of Observations; each becomes a `lab.result` event."""
        await require(deps, who, Access.WRITE_CLINICAL, athlete_id)
        raw = await read_limited(request, MAX_JSON_BYTES)
        events = fhir_lab_events(_json(raw), athlete_id)
        return await accept(deps, who, athlete_id, events, _fingerprint("fhir", athlete_id, raw), idempotency_key)


async def prune_hourly(store: AsyncStore) -> None:
    """Drop what retention no longer needs (see `Store.prune`), now and every hour."""
    while True:
        counts = await store.prune()
        log.info("pruned %s", ", ".join(f"{count} {table}" for table, count in counts.items()))
        await asyncio.sleep(3600)


def _inbox_json(item) -> dict[str, Any]:
    return {**item.alert.model_dump(mode="json"), "acknowledged_at": item.acknowledged_at,
            "acknowledged_by": item.acknowledged_by, "acknowledgement_note": item.acknowledgement_note,
            "withdrawn_at": item.withdrawn_at, "withdrawal_reason": item.withdrawal_reason}


def fhir_lab_events(document: Any, athlete_id: str) -> list[EventBase]:
    """FHIR R4 Observation/Bundle -> validated lab.result events via the clinical engineer's `schemas.fhir`.

    An Observation whose subject names another patient, or cannot be checked, is refused (`schemas.fhir`)
    rather than filed under the route's athlete.
    """
    if not isinstance(document, dict):
        raise Problem(422, [("body", "a FHIR resource must be a JSON object")])
    try:
        if document.get("resourceType") == "Bundle":
            events = fhir.bundle_to_events(document, athlete_id)
        else:
            events = [fhir.observation_to_event(document, athlete_id)]
    except fhir.FhirError as exc:
        raise Problem(422, _problems(str(exc))) from None
    except (AttributeError, TypeError, KeyError):  # an element of the wrong JSON type somewhere in the resource
        raise Problem(422, [("body", "not a FHIR R4 Observation or Bundle of Observations")]) from None
    if not events:
        raise Problem(422, [("entry", "no Observation in the Bundle")])
    if len(events) > MAX_BATCH:
        raise Problem(413, [("entry", f"more than {MAX_BATCH} Observations in one request")])
    return events
