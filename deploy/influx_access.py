"""InfluxDB users and permissions: who may write, and who may read which audience's database.

With authentication on, InfluxDB itself enforces the split that schemas.series decides: the worker's
writer may write both databases, the coaching reader may read the coaching database only, the clinical
reader the clinical database only. Clinicians' tools hold both readers; coaches' tools (their Grafana
organisation) hold only the coaching one, so no dashboard or API bug can show a coach a lab value.

Passwords come from AROMATRACK_INFLUX_<ROLE>_PASSWORD (production: compose passes them from its .env)
or from the users file the local stack generates in its state directory (mode 0600). They are never
printed: not by `stack up`, not in errors (InfluxQL statements carrying them are never quoted).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable

from aromatrack.schemas.series import Audience, database_name
from aromatrack.streams.influx import InfluxUser, SeriesStore

from .settings import Settings


class Role(str, Enum):
    ADMIN = "admin"
    WRITER = "writer"
    COACHING_READER = "coaching_reader"
    CLINICAL_READER = "clinical_reader"

    @property
    def username(self) -> str:
        return f"aromatrack_{self.value}"

    @property
    def password_variable(self) -> str:
        return f"AROMATRACK_INFLUX_{self.value.upper()}_PASSWORD"


READER = {Audience.COACHING: Role.COACHING_READER, Audience.CLINICAL: Role.CLINICAL_READER}


class AccessError(RuntimeError):
    """Credentials are missing or InfluxDB refused to set up users; the message says what to do."""


USERS_FILE = "influxdb-users.json"


def users_file(settings: Settings) -> Path:
    """Where `aromatrack stack up` writes the local stack's passwords (mode 0600)."""
    return settings.state_dir / USERS_FILE


def _stack_users_file(settings: Settings) -> Path:
    """The local stack's users file as a process finds it: in its state directory, else in the nearest directory
    above it that has one, so several workers on one host, each with a state directory of its own inside the
    stack's, log in without copying passwords around."""
    for directory in (settings.state_dir, *settings.state_dir.resolve().parents):
        if (directory / USERS_FILE).is_file():
            return directory / USERS_FILE
    return users_file(settings)


def ensure_users_file(settings: Settings) -> None:
    """Generate a password per role once (first start); later runs keep them (the server has them)."""
    path = users_file(settings)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    passwords = {role.value: secrets.token_urlsafe(24) for role in Role}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(passwords, out)


def user(settings: Settings, role: Role) -> InfluxUser:
    """The role's login: its password from the environment, else from the local stack's users file."""
    password = os.environ.get(role.password_variable)
    if password is None:
        try:
            password = json.loads(_stack_users_file(settings).read_text())[role.value]
        except (FileNotFoundError, KeyError, ValueError):
            raise AccessError(
                f"no InfluxDB password for {role.username}: set {role.password_variable}, or run "
                f"`aromatrack stack up` (it writes {users_file(settings)})"
            ) from None
    return InfluxUser(role.username, password)


def writer_store(settings: Settings, **client_options) -> SeriesStore:
    """The worker's view: writes every audience's database as the writer."""
    writer = user(settings, Role.WRITER)
    return SeriesStore(settings.influx_url, settings.influx_database, {a: writer for a in Audience}, **client_options)


def reader_store(settings: Settings, audiences: Iterable[Audience] = tuple(Audience), **client_options) -> SeriesStore:
    """Read-only view of the given audiences' databases, each with its own reader."""
    users = {audience: user(settings, READER[audience]) for audience in audiences}
    return SeriesStore(settings.influx_url, settings.influx_database, users, **client_options)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Answer:
    """InfluxDB's answer to one statement: its error (None when it succeeded) and the result rows."""

    error: str | None
    values: list[list]


def _run(settings: Settings, statement: str, as_user: InfluxUser | None) -> Answer:
    request = urllib.request.Request(
        f"{settings.influx_url}/query",
        data=urllib.parse.urlencode({"q": statement}).encode(),
        method="POST",
    )
    if as_user is not None:
        token = f"{as_user.username}:{as_user.password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        payload = json.loads(error.read() or b"{}") or {"error": f"HTTP {error.code}"}
    except (urllib.error.URLError, OSError) as error:
        raise AccessError(f"InfluxDB at {settings.influx_url} did not answer ({error})") from None
    results = payload.get("results") or [{}]
    problem = payload.get("error") or results[0].get("error")
    return Answer(problem, (results[0].get("series") or [{}])[0].get("values", []))


def provision(settings: Settings, base_database: str | None = None) -> str:
    """Create the admin (first start), the other users, both audience databases and the grants. Idempotent.

    Returns a line for the operator; it names users and databases, never a password.
    """
    base = base_database or settings.influx_database
    admin = user(settings, Role.ADMIN)
    shown = _run(settings, "SHOW USERS", admin)
    if shown.error and "create admin user first" in shown.error:
        created = _run(settings, f"CREATE USER {admin.username} WITH PASSWORD {_quote(admin.password)} "
                                 "WITH ALL PRIVILEGES", None)
        if created.error:
            raise AccessError(f"InfluxDB refused to create the admin user: {created.error}")
        shown = _run(settings, "SHOW USERS", admin)
    if shown.error:
        raise AccessError(
            f"InfluxDB refused the admin login ({shown.error}): the server's users do not match "
            f"{users_file(settings)} or {Role.ADMIN.password_variable}"
        )
    existing = {row[0] for row in shown.values}
    databases = {audience: database_name(base, audience) for audience in Audience}
    statements = [f'CREATE DATABASE "{name}"' for name in databases.values()]
    for role in (Role.WRITER, *READER.values()):
        if role.username not in existing:
            statements.append(f"CREATE USER {role.username} WITH PASSWORD {_quote(user(settings, role).password)}")
    statements += [f'GRANT WRITE ON "{name}" TO {Role.WRITER.username}' for name in databases.values()]
    statements += [f'GRANT READ ON "{databases[audience]}" TO {role.username}' for audience, role in READER.items()]
    for statement in statements:
        outcome = _run(settings, statement, admin)
        if outcome.error:
            action = " ".join(statement.split()[:3])  # never the password the statement may carry
            raise AccessError(f"InfluxDB refused {action}: {outcome.error}")
    return f"influxdb: databases {', '.join(databases.values())} with their users and grants"
