"""The `tiretrack` command: broker, simulate, replay, ingest, export, dashboard, demo."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ingest.bench import bench
from ingest.chaos import chaos
from ingest.config import (
    DEFAULT_ALERT_ACKS_TOPIC,
    DEFAULT_ALERT_RULES,
    DEFAULT_ALERTS_TOPIC,
    DEFAULT_BOOTSTRAP,
    DEFAULT_DB,
    DEFAULT_DEMO_DB,
    DEFAULT_GROUP_ID,
    DEFAULT_INVENTORY_TOPIC,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_SECRETS,
    DEFAULT_SERVE_HOST,
    DEFAULT_SERVE_PORT,
    DEFAULT_SHIPMENTS_TOPIC,
    DEFAULT_WEBHOOK_TIMEOUT_S,
    IngestSettings,
    KafkaSettings,
    ServeSettings,
)
from ingest.errors import ConfigError, TiretrackError

log = logging.getLogger("tiretrack")


def _kafka_options(func: Any) -> Any:
    """Options shared by every command that talks to Kafka."""
    options = [
        click.option(
            "--bootstrap-servers",
            envvar="KAFKA_BOOTSTRAP_SERVERS",
            default=DEFAULT_BOOTSTRAP,
            show_default=True,
            help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].",
        ),
        click.option(
            "--kafka-config",
            "kafka_config",
            envvar="TIRETRACK_KAFKA_CONFIG",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="librdkafka client.properties file (SASL/SSL settings, secrets); "
            "its entries override the defaults.",
        ),
        click.option(
            "--shipments-topic",
            envvar="TIRETRACK_SHIPMENTS_TOPIC",
            default=DEFAULT_SHIPMENTS_TOPIC,
            show_default=True,
            help="Topic of shipment.* events.",
        ),
        click.option(
            "--inventory-topic",
            envvar="TIRETRACK_INVENTORY_TOPIC",
            default=DEFAULT_INVENTORY_TOPIC,
            show_default=True,
            help="Topic of inventory.* events.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _kafka_settings(kw: dict[str, Any]) -> KafkaSettings:
    path = kw.pop("kafka_config")
    if path is not None and not path.exists():
        raise ConfigError(f"--kafka-config {path} does not exist")
    return KafkaSettings(
        bootstrap_servers=kw.pop("bootstrap_servers"),
        properties_file=path,
        shipments_topic=kw.pop("shipments_topic"),
        inventory_topic=kw.pop("inventory_topic"),
        alerts_topic=kw.pop("alerts_topic", DEFAULT_ALERTS_TOPIC),
        alert_acks_topic=kw.pop("alert_acks_topic", DEFAULT_ALERT_ACKS_TOPIC),
    )


def _alert_options(func: Any) -> Any:
    """Where alerts go and by which rules (`ingest`; the rules and webhook also on `demo`)."""
    for option in reversed(ALERT_OPTIONS):
        func = option(func)
    return func


ALERT_RULES_OPTION = click.option(
    "--alert-rules",
    "alert_rules",
    envvar="TIRETRACK_ALERT_RULES",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_ALERT_RULES,
    show_default=True,
    help="TOML file of alert rules: thresholds, severities, debounce (see README, Alerts).",
)
WEBHOOK_URL_OPTION = click.option(
    "--webhook-url",
    envvar="TIRETRACK_WEBHOOK_URL",
    default=None,
    help="Also POST every alert event as JSON to this http(s) URL (retried; never slows ingest).",
)
WEBHOOK_TIMEOUT_OPTION = click.option(
    "--webhook-timeout-s",
    "webhook_timeout",
    envvar="TIRETRACK_WEBHOOK_TIMEOUT_S",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_WEBHOOK_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the webhook to answer one POST.",
)
ALERT_OPTIONS = [
    click.option(
        "--alerts-topic",
        envvar="TIRETRACK_ALERTS_TOPIC",
        default=DEFAULT_ALERTS_TOPIC,
        show_default=True,
        help="Topic the worker publishes alert events to.",
    ),
    click.option(
        "--alert-acks-topic",
        envvar="TIRETRACK_ALERT_ACKS_TOPIC",
        default=DEFAULT_ALERT_ACKS_TOPIC,
        show_default=True,
        help="Topic of alert acknowledgements (from the dashboard) the worker applies.",
    ),
    ALERT_RULES_OPTION,
    click.option(
        "--alert-time-scale",
        envvar="TIRETRACK_ALERT_TIME_SCALE",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Divide the rules' event-time thresholds (minutes, days) by this "
        "(the demo gives the simulator's time scale).",
    ),
    WEBHOOK_URL_OPTION,
    WEBHOOK_TIMEOUT_OPTION,
]


DB_OPTION = click.option(
    "--db",
    "db_path",
    envvar="TIRETRACK_DB",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="DuckDB database file written by the worker.",
)
TOLERANCE_OPTION = click.option(
    "--on-time-tolerance",
    "tolerance",
    envvar="TIRETRACK_ON_TIME_TOLERANCE",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Minutes after planned arrival that still count as on time.",
)


def port_option(name: str, envvar: str, default: int, what: str) -> Any:
    return click.option(
        name,
        envvar=envvar,
        type=click.IntRange(1, 65535),
        default=default,
        show_default=True,
        help=f"Port of the {what}.",
    )


SERVE_PORT_OPTION = port_option(
    "--serve-port", "TIRETRACK_SERVE_PORT", DEFAULT_SERVE_PORT, "Quack database server"
)
RATE_OPTION = click.option(
    "--rate",
    envvar="TIRETRACK_SIM_RATE",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Simulator: target events per second (sets the fleet size).",
)
TIME_SCALE_OPTION = click.option(
    "--time-scale",
    envvar="TIRETRACK_SIM_TIME_SCALE",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Simulator: durations divided by this (at 60 a 9-hour trip takes 9 minutes).",
)


def malformed_option(default: float) -> Any:
    return click.option(
        "--malformed-rate",
        envvar="TIRETRACK_SIM_MALFORMED_RATE",
        type=click.FloatRange(0, 1),
        default=default,
        show_default=True,
        help="Simulator: fraction of extra malformed messages (the dead-letter path).",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--log-level",
    envvar="TIRETRACK_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging detail on stderr.",
)
def cli(log_level: str) -> None:
    """Tiretrack: real-time tire logistics from Kafka events to DuckDB and a live dashboard."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _stop_on_signals(handler: Any) -> None:
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@cli.command()
@click.option(
    "--host",
    envvar="TIRETRACK_BROKER_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the local broker listens on (loopback by default).",
)
@port_option("--port", "TIRETRACK_BROKER_PORT", 9092, "local broker")
def broker(host: str, port: int) -> None:
    """Run the local Kafka-compatible broker (Tansu, in memory) until Ctrl-C."""
    from ingest.broker import start_broker

    running = start_broker(host, port)
    click.echo(f"local broker ready on {running.bootstrap_servers} (in memory; Ctrl-C stops it)")
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    _stop_on_signals(on_signal)
    try:
        while not stop and running.alive():
            time.sleep(0.2)
    finally:
        running.stop()
    if not stop:
        raise TiretrackError(
            f"the local broker exited unexpectedly (code {running.process.returncode})"
        )


def _memory_size(_ctx: Any, _param: Any, value: str) -> str:
    from ingest.database import memory_size

    try:
        return memory_size(value)
    except TiretrackError as e:
        raise click.BadParameter(str(e)) from e


def _instant(_ctx: Any, _param: Any, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    from ingest.export import parse_instant

    try:
        return parse_instant(value)
    except TiretrackError as e:
        raise click.BadParameter(str(e)) from e


@cli.command()
@_kafka_options
@click.option(
    "--seed",
    envvar="TIRETRACK_SIM_SEED",
    type=int,
    default=42,
    show_default=True,
    help="Random seed: the same seed and settings give the same events.",
)
@RATE_OPTION
@click.option(
    "--duration",
    envvar="TIRETRACK_SIM_DURATION",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds of (event) time; default: forever.",
)
@click.option(
    "--max-events",
    envvar="TIRETRACK_SIM_MAX_EVENTS",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many messages.",
)
@TIME_SCALE_OPTION
@click.option(
    "--backfill",
    is_flag=True,
    envvar="TIRETRACK_SIM_BACKFILL",
    help="Generate --duration seconds of history ending now, as fast as possible, "
    "instead of publishing in real time.",
)
@click.option(
    "--duplicate-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="TIRETRACK_SIM_DUPLICATE_RATE",
    help="Fraction of messages sent twice.",
)
@click.option(
    "--out-of-order-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="TIRETRACK_SIM_OUT_OF_ORDER_RATE",
    help="Fraction of messages delivered late, out of order.",
)
@malformed_option(0.0)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSON Lines to this file instead of publishing to Kafka "
    "(replay it with `tiretrack replay`).",
)
def simulate(**kw: Any) -> None:
    """Publish a realistic, seeded stream of contract events (or write it to a JSONL file)."""
    from ingest import publishing

    kafka = _kafka_settings(kw)
    stats = publishing.run_simulation(kafka, **kw)
    click.echo(f"simulator: {stats}")


@cli.command()
@_kafka_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--pace/--no-pace",
    default=False,
    show_default=True,
    help="Publish at the recorded emit times instead of as fast as possible.",
)
def replay(file: Path, pace: bool, **kw: Any) -> None:
    """Publish a JSON Lines file written by `tiretrack simulate --out` to Kafka."""
    from ingest import publishing

    kafka = _kafka_settings(kw)
    sent = publishing.replay_file(kafka, file, pace=pace)
    click.echo(f"replayed {sent} messages from {file}")


@cli.command()
@_kafka_options
@DB_OPTION
@TOLERANCE_OPTION
@click.option(
    "--group-id",
    envvar="TIRETRACK_GROUP_ID",
    default=DEFAULT_GROUP_ID,
    show_default=True,
    help="Consumer group the worker reports its progress to.",
)
@click.option(
    "--serve-host",
    envvar="TIRETRACK_SERVE_HOST",
    default=DEFAULT_SERVE_HOST,
    show_default=True,
    help="Address the Quack database server binds (loopback unless opened on purpose).",
)
@SERVE_PORT_OPTION
@click.option(
    "--no-serve",
    is_flag=True,
    envvar="TIRETRACK_NO_SERVE",
    help="Do not serve the database to other processes.",
)
@click.option(
    "--batch-size",
    envvar="TIRETRACK_BATCH_SIZE",
    type=click.IntRange(1, 100_000),
    default=20000,
    show_default=True,
    help="Most messages stored per transaction (fewer when caught up).",
)
@click.option(
    "--batch-timeout",
    envvar="TIRETRACK_BATCH_TIMEOUT",
    type=click.FloatRange(0.001, 10),
    default=0.2,
    show_default=True,
    help="Seconds to wait for the first message of a batch (the rest is what already arrived).",
)
@click.option(
    "--memory-limit",
    envvar="TIRETRACK_MEMORY_LIMIT",
    default=DEFAULT_MEMORY_LIMIT,
    show_default=True,
    callback=_memory_size,
    help="DuckDB's memory limit for the worker, e.g. 1GB or 512MB (cold data is re-read from "
    "the file).",
)
@click.option(
    "--stop-at-end",
    is_flag=True,
    envvar="TIRETRACK_STOP_AT_END",
    help="Stop once every partition is read to its end (backfills, tests).",
)
@click.option(
    "--progress-interval",
    envvar="TIRETRACK_PROGRESS_INTERVAL",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between progress log lines.",
)
@click.option(
    "--startup-timeout",
    envvar="TIRETRACK_STARTUP_TIMEOUT",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep retrying an unreachable Kafka at start (0: until stopped).",
)
@_alert_options
def ingest(**kw: Any) -> None:
    """Consume events into DuckDB exactly once, keep the derived state, serve it over Quack."""
    from ingest.worker import Worker

    kafka = _kafka_settings(kw)
    settings = IngestSettings(
        kafka=kafka,
        db_path=kw["db_path"],
        group_id=kw["group_id"],
        serve=ServeSettings(
            host=kw["serve_host"], port=kw["serve_port"], enabled=not kw["no_serve"]
        ),
        batch_size=kw["batch_size"],
        batch_timeout_s=kw["batch_timeout"],
        memory_limit=kw["memory_limit"],
        stop_at_end=kw["stop_at_end"],
        on_time_tolerance_minutes=kw["tolerance"],
        progress_interval_s=kw["progress_interval"],
        startup_timeout_s=kw["startup_timeout"],
        alert_rules_path=kw["alert_rules"],
        alert_time_scale=kw["alert_time_scale"],
        webhook_url=kw["webhook_url"] or None,
        webhook_timeout_s=kw["webhook_timeout"],
    )
    worker = Worker(settings)
    _stop_on_signals(worker.request_stop)
    worker.run()


@cli.command()
@click.argument(
    "dataset", type=click.Choice(["shipments", "inventory", "in-transit", "dead-letters"])
)
@DB_OPTION
@TOLERANCE_OPTION
@click.option(
    "--as-of",
    "as_of",
    callback=_instant,
    default=None,
    help="Snapshot as of this RFC 3339 time (e.g. 2026-03-02T08:00:00Z); default: now.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "xlsx"]),
    default="csv",
    show_default=True,
    help="File format.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write; <out>.manifest.json is written next to it.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Keep rows whose COLUMN equals VALUE (repeat; same column = any of).",
)
@click.option(
    "--raw-text",
    is_flag=True,
    envvar="TIRETRACK_EXPORT_RAW_TEXT",
    help="CSV and Excel: write text exactly, even when it starts with = + - @ tab or CR "
    "(by default such text gets a leading ' so spreadsheets do not run it as a formula).",
)
def export(
    dataset: str,
    db_path: Path,
    tolerance: float,
    as_of: dt.datetime | None,
    fmt: str,
    out: Path,
    filters: tuple[str, ...],
    raw_text: bool,
) -> None:
    """Write a snapshot of shipments, inventory, in-transit stock or dead letters."""
    from ingest.export import export_snapshot
    from ingest.readers import open_reader

    parsed: dict[str, list[str]] = {}
    for item in filters:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise click.BadParameter(f"{item!r}: write COLUMN=VALUE", param_hint="--filter")
        parsed.setdefault(column.strip(), []).append(value)
    if as_of is not None and dataset == "dead-letters":
        log.warning("--as-of does not apply to dead-letters: exporting every rejected message")
    reader = open_reader(db_path)
    try:
        result = export_snapshot(
            reader,
            dataset,
            fmt=fmt,
            out=out,
            as_of=as_of,
            tolerance_minutes=tolerance,
            filters=parsed,
            raw_text=raw_text,
        )
    finally:
        reader.close()
    click.echo(f"wrote {result.rows} rows to {result.out} (manifest {result.manifest_path})")


@cli.command()
@DB_OPTION
def shell(db_path: Path) -> None:
    """Open the DuckDB CLI on the live database (over Quack while the worker runs)."""
    from ingest.shell import run_shell

    sys.exit(run_shell(db_path))


@cli.command()
@DB_OPTION
@click.option(
    "--host",
    envvar="TIRETRACK_DASHBOARD_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the dashboard listens on.",
)
@port_option("--port", "TIRETRACK_DASHBOARD_PORT", 8501, "dashboard")
def dashboard(db_path: Path, host: str, port: int) -> None:
    """Run the Streamlit dashboard over the worker's live database."""
    from ingest.processes import run_dashboard

    sys.exit(run_dashboard(db_path, host, port))


@cli.command()
@click.option(
    "--db",
    "db_path",
    envvar="TIRETRACK_DEMO_DB",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DEMO_DB,
    show_default=True,
    help="Demo database; recreated at each start (the local broker starts empty too).",
)
@port_option("--broker-port", "TIRETRACK_BROKER_PORT", 9092, "local broker")
@port_option("--dashboard-port", "TIRETRACK_DASHBOARD_PORT", 8501, "dashboard")
@SERVE_PORT_OPTION
@RATE_OPTION
@TIME_SCALE_OPTION
@malformed_option(0.002)
@ALERT_RULES_OPTION
@WEBHOOK_URL_OPTION
@WEBHOOK_TIMEOUT_OPTION
def demo(**kw: Any) -> None:
    """Start broker, simulator, worker and dashboard together; Ctrl-C stops them all."""
    from ingest.processes import run_demo

    sys.exit(run_demo(**kw))


@cli.group()
def user() -> None:
    """Manage dashboard users (kept in .streamlit/secrets.toml, passwords PBKDF2-hashed)."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["planner", "manager", "analyst", "admin"]),
    required=True,
    help="What the user may see: planner, manager, analyst (plus export) or admin.",
)
@click.option(
    "--secrets",
    "secrets_path",
    envvar="TIRETRACK_SECRETS",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SECRETS,
    show_default=True,
    help="Streamlit secrets file holding the users (created with mode 0600).",
)
@click.password_option(
    "--password",
    envvar="TIRETRACK_USER_PASSWORD",
    help="Asked for (twice, hidden) unless the environment variable is set; "
    "never give it on the command line.",
)
def user_add(name: str, role: str, secrets_path: Path, password: str) -> None:
    """Add a dashboard user, or replace the password and role of an existing one."""
    from dashboard.users import add_user

    try:
        add_user(secrets_path, name, role, password)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    click.echo(f"user {name} ({role}) saved in {secrets_path}")


cli.add_command(bench)
cli.add_command(chaos)


def main() -> None:
    """Entry point: one-line errors for the user, never a traceback for expected failures."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except TiretrackError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
