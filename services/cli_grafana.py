"""`aromatrack grafana provision --url ... --token ...`: the boards through Grafana's HTTP API.

For a Grafana that does not read grafana/provisioning (docker compose does); idempotent, so safe to re-run.
"""

from __future__ import annotations

import typer
from grafana_api.grafana_api import GrafanaException
from requests import RequestException

from aromatrack.services.grafana import connect, load_plan, provision

grafana_app = typer.Typer(help="Grafana boards for coaches, athletes and clinicians.", no_args_is_help=True)


@grafana_app.command("provision")
def provision_command(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://127.0.0.1:3000"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="Service-account token with Admin role."),
    influx_url: str = typer.Option(None, help="InfluxDB URL as Grafana reaches it (default: the compose one)."),
) -> None:
    """Create or update the InfluxDB datasource, the Coaches and Clinicians teams, the coaching and
    clinical folders with their permissions, and the dashboards."""
    try:
        for line in provision(connect(url, token), load_plan(influx_url=influx_url)):
            typer.echo(line)
    except (GrafanaException, RequestException, ValueError) as exc:
        typer.echo(f"error: grafana provision: {exc}", err=True)
        raise typer.Exit(1)


def register_grafana_commands(app: typer.Typer) -> None:
    app.add_typer(grafana_app, name="grafana")
