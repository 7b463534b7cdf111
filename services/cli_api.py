"""`aromatrack api`, `aromatrack notifier` and `aromatrack users ...`: thin commands over services.api,
services.notifier and the store. Heavy imports stay inside the commands so the CLI starts fast."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

import typer

from aromatrack.deploy.settings import API_PORT, load_settings
from aromatrack.services.auth import DEFAULT_TOKEN_DAYS, Role

T = TypeVar("T")

users_app = typer.Typer(help="API users, their tokens and care teams (coach/clinician of an athlete).")


DAYS = typer.Option(DEFAULT_TOKEN_DAYS, "--days", min=0.001, max=3660, help="How long the new token is valid.")


def _or_exit(action: Callable[[Any], T]) -> T:
    """Run `action` on the store; a refused operation or an unreachable store prints its reason and exits 1."""
    from aromatrack.services.store import Store, StoreError

    try:
        store = Store(load_settings().store_url)
        try:
            return action(store)
        finally:
            store.close()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


@users_app.command("add")
def users_add(
    user_id: str = typer.Argument(..., help="For an athlete: their athlete id."),
    role: Role = typer.Option(..., help="athlete, coach or clinician."),
    email: str = typer.Option(None, help="Clinicians: where alert e-mails go."),
    webhook_url: str = typer.Option(None, help="Clinicians: where signed alert webhooks go (https; http only to "
                                    "loopback)."),
    webhook_secret: str = typer.Option(None, help="Clinicians: the webhook's Standard Webhooks secret (whsec_...; "
                                       "make one with `users new-webhook-secret`). Required with a webhook URL; "
                                       "kept when not given again."),
    days: float = DAYS,
) -> None:
    """Create or update a user and print a new API token (shown once; only its hash is stored).

    Options not given keep their stored values. Changing a user's role ends the tokens of the old role."""
    typer.echo(_or_exit(lambda store: store.add_user(user_id, role, email=email, webhook_url=webhook_url,
                                                     webhook_secret=webhook_secret, token_days=days)))


@users_app.command("new-webhook-secret")
def users_new_webhook_secret() -> None:
    """Print a fresh webhook secret (whsec_ + 32 random bytes) to give the clinic and to `users add`."""
    from aromatrack.services.webhooks import new_webhook_secret

    typer.echo(new_webhook_secret())


@users_app.command("token")
def users_token(user_id: str, days: float = DAYS) -> None:
    """Issue another token for an existing user (e.g. a second device)."""
    typer.echo(_or_exit(lambda store: store.issue_token(user_id, days=days)))


@users_app.command("tokens")
def users_tokens(user_id: str) -> None:
    """List a user's tokens by id (never the tokens themselves), with their state."""
    import time
    from datetime import datetime, timezone

    def when(at: float) -> str:
        return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M")

    for info in _or_exit(lambda store: store.tokens_of(user_id)):
        state = (f"revoked {when(info.revoked_at)}" if info.revoked_at is not None
                 else "expired" if info.expires_at <= time.time() else "live")
        typer.echo(f"{info.token_id}  issued {when(info.created_at)}  expires {when(info.expires_at)}  {state}")


@users_app.command("revoke")
def users_revoke(user_id: str, token_id: str = typer.Option(None, "--token", help="One token's id (from "
                                                                                    "`users tokens`); default all.")) -> None:
    """Revoke a user's tokens at once (a lost device, a leaked token)."""
    count = _or_exit(lambda store: store.revoke_tokens(user_id, token_id))
    typer.echo(f"{count} token(s) of {user_id} revoked")


@users_app.command("rotate")
def users_rotate(user_id: str, days: float = DAYS) -> None:
    """Print a new token for the user and revoke every older one."""
    typer.echo(_or_exit(lambda store: store.rotate_token(user_id, days=days)))


@users_app.command("remove")
def users_remove(user_id: str) -> None:
    """Remove a user: their tokens and care-team places go; alerts already received stay on record."""
    _or_exit(lambda store: store.remove_user(user_id))
    typer.echo(f"{user_id} removed")


@users_app.command("assign")
def users_assign(athlete_id: str, member_id: str = typer.Argument(..., help="A coach or clinician user.")) -> None:
    """Put a coach or clinician on an athlete's care team."""
    _or_exit(lambda store: store.assign(athlete_id, member_id))
    typer.echo(f"{member_id} now on the care team of {athlete_id}")


@users_app.command("unassign")
def users_unassign(athlete_id: str, member_id: str) -> None:
    """Take a coach or clinician off an athlete's care team (their access ends at once)."""
    if not _or_exit(lambda store: store.unassign(athlete_id, member_id)):
        typer.echo(f"error: {member_id} is not on the care team of {athlete_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{member_id} taken off the care team of {athlete_id}")


def api(
    host: str = typer.Option("127.0.0.1", help="Listen address (loopback by default; put a TLS-terminating "
                             "proxy in front for anything else)."),
    port: int = typer.Option(API_PORT, help="Listen port."),
    rate: float = typer.Option(20.0, min=0.01, help="Requests per second each token may sustain."),
    burst: int = typer.Option(200, min=1, help="Requests a token may send at once above the rate."),
    body_timeout: float = typer.Option(30.0, min=0.1, help="Seconds a request body may take to arrive."),
) -> None:
    """Serve the HTTP ingest API (OpenAPI at /docs and /openapi.json) and the clinicians' inbox at /inbox. Logs
    an access line per request and the audit lines (denials, acknowledgements) on stderr: ids, roles and
    statuses, never health data."""
    import uvicorn

    from aromatrack.services.api import Limits, api_log_config, create_app

    app = create_app(settings=load_settings(), limits=Limits(rate, burst, body_timeout))
    uvicorn.run(app, host=host, port=port, log_config=api_log_config(), timeout_keep_alive=5)


def notifier(
    smtp_host: str = typer.Option(None, help="SMTP server for alert e-mails (none: webhooks only)."),
    smtp_port: int = typer.Option(25),
    smtp_user: str = typer.Option(None, help="SMTP login (its password from AROMATRACK_SMTP_PASSWORD); needs "
                                  "STARTTLS."),
    smtp_ca_file: str = typer.Option(None, help="CA certificate to verify the SMTP server by (default: the "
                                     "system's)."),
    attempts: int = typer.Option(5, min=1, help="Delivery attempts per channel before dead-lettering."),
    first_delay: float = typer.Option(0.5, help="Seconds before the first retry; doubles each retry."),
    renotify_after: float = typer.Option(86400.0, help="Seconds before an unacknowledged alert is sent again."),
    group: str = typer.Option("aromatrack-notifier", help="Kafka consumer group (one per deployment)."),
    historical_after: float = typer.Option(
        14.0, min=0, help="Days: an alert older than this when it arrives (a history import) is stored and "
        "summarised once per athlete and clinician, not delivered on its own."),
    summary_quiet: float = typer.Option(
        30.0, min=0, help="Seconds without a historical alert for an athlete before the import's summary goes out."),
    health_port: int = typer.Option(
        None, envvar="AROMATRACK_HEALTH_PORT", min=1, max=65535,
        help="Serve /livez (the consume loop goes round) and /readyz (it holds alert partitions) on this port. "
        "Off by default."),
    health_bind: str = typer.Option(
        "127.0.0.1", envvar="AROMATRACK_HEALTH_BIND", help="Address of the health port: loopback by default; "
        "0.0.0.0 in a pod, so probes reach it."),
) -> None:
    """Deliver alerts from the alerts topic to each athlete's clinicians (webhook and e-mail). E-mail uses
    STARTTLS whenever offered, and sends nothing without it off this host."""
    import logging
    import os

    from aromatrack.services.notifier import HistoricalImports, Retry, SmtpConfig, serve

    # Delivery lines name alert ids and channels only, never alert content.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    smtp = SmtpConfig(smtp_host, smtp_port, username=smtp_user, password=os.environ.get("AROMATRACK_SMTP_PASSWORD"),
                      ca_file=smtp_ca_file) if smtp_host else None
    asyncio.run(serve(load_settings(), smtp=smtp, retry=Retry(attempts, first_delay), renotify_after_s=renotify_after,
                      group_id=group, historical=HistoricalImports(historical_after * 86400, summary_quiet),
                      health_address=(health_bind, health_port) if health_port else None))


def register_api_commands(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.command()(api)
    app.command()(notifier)
