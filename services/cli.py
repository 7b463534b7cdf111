"""The `aromatrack` command line: thin commands over the domain core, the stack and the streams."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import typer

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import load_settings

app = typer.Typer(
    help="Aromatrack: training load and fat-loss trends against TRT/anastrozole labs, "
    "flagged for clinicians. It never changes or recommends a dose.",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the local servers (broker, InfluxDB and PostgreSQL, loopback "
                        "only).")
schemas_app = typer.Typer(help="The event contract.")
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")


def _stack_call(action) -> None:
    try:
        for line in action(load_settings()):
            typer.echo(line)
    except local_stack.StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Install what is missing, start the broker, InfluxDB and PostgreSQL, and wait until each answers.

    PostgreSQL is there for the store's production path; the API and notifier use it when AROMATRACK_STORE_DSN
    names it (`up` prints its DSN; the password is in the state dir), else their embedded SQLite file."""
    _stack_call(local_stack.up)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the servers this project started (data stays in the state directory)."""
    _stack_call(local_stack.down)


@stack_app.command("status")
def stack_status() -> None:
    """Say which servers run and where."""
    _stack_call(local_stack.report)


@schemas_app.command("export")
def schemas_export(
    directory: Path = typer.Option(None, help="Where to write the files (default: schemas/json)."),
) -> None:
    """Write one JSON Schema file per event type (and the alert output) for non-Python producers."""
    from aromatrack.schemas.export import JSON_DIR, write_json_schemas

    for path in write_json_schemas(directory or JSON_DIR):
        typer.echo(str(path))


@app.command()
def worker(
    loglevel: str = typer.Option("warn", help="faust log level: crit, error, warn, info or debug."),
    data_dir: Path = typer.Option(
        None,
        help="This worker's own directory (faust's datadir). Default: AROMATRACK_WORKER_DIR, else "
        "AROMATRACK_STATE_DIR/faust. Every worker on one host needs its own; a directory in use by a running worker "
        "is refused.",
    ),
    web_port: int = typer.Option(
        None, min=1, max=65535,
        help="Serve the worker's health routes (/livez; /readyz: partitions assigned and tables recovered) and "
        "faust's counters on PORT. Default: AROMATRACK_WEB_PORT, else off; every worker on one host needs its "
        "own port.",
    ),
    web_bind: str = typer.Option(
        None,
        help="Address the web port listens on. Default: AROMATRACK_WEB_BIND, else loopback (127.0.0.1); 0.0.0.0 in "
        "a pod, so probes reach it.",
    ),
    session_timeout: float = typer.Option(
        None, min=6, max=300,
        help="Seconds before the other workers take over a silent (killed) worker's partitions. Default: "
        "AROMATRACK_SESSION_TIMEOUT_S, else faust's 60 s (aiokafka's 10 s for the ingest consumer). The broker "
        "accepts 6 s at least.",
    ),
    lab_method: list[str] = typer.Option(
        [], "--lab-method", metavar="LAB=METHOD",
        help="The assay a lab uses when its results name none (lc_msms or immunoassay); repeat per lab. Default: "
        "AROMATRACK_LAB_METHODS (LAB=METHOD,...). Give `aromatrack evaluate` the same to get the same alerts.",
    ),
    historical_after: float = typer.Option(
        None, "--historical-after", min=0, metavar="DAYS",
        help="An alert released more than this after its time (a history import) is marked historical: stored "
        "and summarised by the notifier, not paged. Default: AROMATRACK_HISTORICAL_AFTER_DAYS, else 14.",
    ),
) -> None:
    """Run the stream worker (all agents) against AROMATRACK_KAFKA and AROMATRACK_INFLUX_URL.

    Several workers of one app (same AROMATRACK_APP_ID) share the stream: each topic's partitions are spread
    over them, and each athlete's state lives on the worker that owns the athlete's partition. More workers
    than partitions leaves the extra ones idle (README: scaling out). AROMATRACK_REST_DAYS_INTERVAL_S (default
    3600) sets how often every athlete's load model is carried through today; AROMATRACK_TIMELINE_EVENTS (default
    1500) how many events of an athlete's clinical timeline stay in memory before a release keeps only a third.
    """
    import dataclasses

    from aromatrack.services.cli_evaluate import settings_with_flags

    settings = settings_with_flags(lab_method, historical_after)
    flags = {"data_dir": data_dir, "web_port": web_port, "web_bind": web_bind, "session_timeout_s": session_timeout}
    settings = dataclasses.replace(settings, worker=dataclasses.replace(
        settings.worker, **{name: value for name, value in flags.items() if value is not None}))
    lock = _hold_worker_dir(settings.worker_dir)  # noqa: F841  (held until the process exits)

    from aromatrack.streams.app import prepare_storage
    from aromatrack.streams.worker import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per InfluxDB request otherwise
    faust_app = create_app(settings)
    asyncio.run(prepare_storage(settings, faust_app))
    web = [] if settings.worker.web_port is not None else ["--without-web"]
    sys.argv = ["aromatrack-worker", "worker", "--loglevel", loglevel, *web]
    # Once faust's worker has stopped (a signal, or a crash it re-raises, e.g. fenced: streams/fencing.py), a
    # thread it leaves behind can keep the process alive forever (seen under exactly-once, after SIGTERM and after
    # a fenced producer): exit with the worker's status, since a supervisor restarts only a process that exits.
    exit_when_a_crashed_stop_hangs(faust_app, CRASHED_STOP_DEADLINE_S)
    try:
        faust_app.main()
    except SystemExit as stopped:
        status = stopped.code if isinstance(stopped.code, int) else (0 if stopped.code is None else 1)
    except Exception:  # noqa: BLE001 - what crashed the app, re-raised by faust
        traceback.print_exc()
        status = 1
    else:
        status = 0
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# faust's stop after a crash has hung for minutes (a fenced worker in the multi-host test, its stop stuck in an
# agent's supervisor): past this, a crashed worker exits anyway.
CRASHED_STOP_DEADLINE_S = 30.0


def exit_when_a_crashed_stop_hangs(app: Any, deadline_s: float, exit: Callable[[int], Any] = os._exit) -> threading.Thread:
    """Watch `app` from a daemon thread: once it has crashed, give its stop `deadline_s` to end the process, then
    `exit(1)`. A crashed worker must exit for its supervisor to start it again (compose's restart policy; the
    multi-host test's restart)."""
    def watch() -> None:
        while app.crash_reason is None:
            time.sleep(0.5)
        time.sleep(deadline_s)
        logging.getLogger(__name__).error("the worker crashed and did not stop within %.0f s; exiting", deadline_s)
        logging.shutdown()
        exit(1)

    watcher = threading.Thread(target=watch, name="exit-when-a-crashed-stop-hangs", daemon=True)
    watcher.start()
    return watcher


def _hold_worker_dir(directory: Path):
    """Lock the worker's directory for this process, or exit naming the worker that holds it."""
    import fcntl
    import os

    directory.mkdir(parents=True, exist_ok=True)
    lock = open(directory / "worker.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        typer.echo(f"error: {directory} is used by a running worker (pid {holder}); give each worker its own "
                   "--data-dir (AROMATRACK_WORKER_DIR)", err=True)
        raise typer.Exit(1)
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


@app.command()
def send(
    timeline: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
) -> None:
    """Validate every event in a JSON-lines file and produce the valid ones to their Kafka topics, as one bulk
    import: the stream releases the alerts once the whole file is in (30 s after the worker consumed what a
    sender that died had sent).

    Bad lines are reported on stderr as FILE:LINE: problem and skipped; the exit status is 1 if any.
    """
    from aromatrack.services.jsonl import read_events, report_to_stderr
    from aromatrack.streams.producer import EventProducer

    problems: list[str] = []

    def on_error(message: str) -> None:
        problems.append(message)
        report_to_stderr(message)

    events = list(read_events(timeline, on_error=on_error))
    bad_lines = len(problems)

    async def produce() -> int:
        async with EventProducer(load_settings().kafka_bootstrap) as producer, producer.bulk_import():
            return await producer.send_all(events)

    sent = asyncio.run(produce())
    typer.echo(f"sent {sent} events" + (f", skipped {bad_lines} bad lines" if bad_lines else ""))
    if bad_lines:
        raise typer.Exit(1)


@app.command()
def demo(
    athletes: int = typer.Option(50, min=1, help="Cohort size."),
    days: int = typer.Option(182, min=7, help="Days of history per athlete."),
    seed: int = typer.Option(7, help="Random seed; the same seed gives the same cohort and results."),
    workers: int = typer.Option(2, min=1, max=8, help="Stream workers to run (one per core: they share the "
                                "partitions, so the FIT uploads are decoded on every core)."),
) -> None:
    """Run the main job end to end on the local stack with a synthetic cohort, then report what happened."""
    from aromatrack.services import demo as demo_job

    try:
        demo_job.run(load_settings(), athletes=athletes, days=days, seed=seed, workers=workers)
    except (local_stack.StackError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


from aromatrack.services.cli_api import register_api_commands  # noqa: E402

register_api_commands(app)

from aromatrack.services.cli_evaluate import register_evaluate_command  # noqa: E402

register_evaluate_command(app)


def main() -> None:
    app()


from aromatrack.services.cli_fit import register_fit_commands  # noqa: E402

register_fit_commands(app)

from aromatrack.services.cli_grafana import register_grafana_commands  # noqa: E402

register_grafana_commands(app)


# Keep this last: under `python -m` it runs here, so commands registered below it would be missing.
if __name__ == "__main__":
    main()
