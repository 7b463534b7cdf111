"""`aromatrack grafana provision --url ... --user ...`: organisations, datasources and boards through Grafana's API.

Idempotent, so safe to re-run (compose runs it once Grafana is healthy). The InfluxDB readers' passwords come
from the deployment (AROMATRACK_INFLUX_<ROLE>_PASSWORD, or the local stack's users file) and are never printed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from grafana_api.grafana_api import GrafanaException
from requests import RequestException

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import load_settings
from aromatrack.services.grafana import GRAFANA_DIR, connect, load_plan, provision

grafana_app = typer.Typer(help="Grafana boards for coaches, athletes and clinicians.", no_args_is_help=True)


@grafana_app.command("provision")
def provision_command(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://127.0.0.1:3000"),
    user: str = typer.Option("admin", help="A Grafana server admin (creating organisations needs one)."),
    password: str = typer.Option(..., envvar="GRAFANA_ADMIN_PASSWORD", help="That admin's password."),
    influx_url: str = typer.Option("http://influxdb:8086", help="InfluxDB URL as Grafana reaches it."),
    grafana_dir: Path = typer.Option(GRAFANA_DIR, help="The grafana/ directory (provisioning/ and dashboards/)."),
) -> None:
    """Create or update the Coaching and Clinical organisations, each with only the InfluxDB datasources its
    audience may read (a coach's organisation can query the coaching database only), their folders and boards."""
    settings = load_settings()
    try:
        readers = {audience: influx_access.user(settings, role) for audience, role in influx_access.READER.items()}
        plan = load_plan(grafana_dir)
        for line in provision(connect(url, user, password), plan, readers, influx_url, settings.influx_database):
            typer.echo(line)
    except (GrafanaException, RequestException, ValueError, influx_access.AccessError) as exc:
        typer.echo(f"error: grafana provision: {exc}", err=True)
        raise typer.Exit(1)


def register_grafana_commands(app: typer.Typer) -> None:
    app.add_typer(grafana_app, name="grafana")
