"""`serve`: migrate if needed, then run web UI, API and scheduler in one process."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn

from appliance.app import create_app
from appliance.cli.common import CliError, run_with_database, settings_from, subparser
from appliance.lockfile import DataDirLock
from appliance.memory import limit_malloc_arenas
from appliance.services.doorbell import raise_file_limit
from appliance.services.keys import open_key_service
from appliance.store.migrations import migrate
from kernel.logs import configure_logging, log_event

logger = logging.getLogger("redflag.serve")


def register(commands: argparse._SubParsersAction) -> None:
    parser = subparser(
        commands,
        "serve",
        "run the appliance (web UI, API, scheduler)",
        "Run the appliance in the foreground. Pending migrations are applied first,\n"
        "after a verified snapshot of the database. Ctrl-C or SIGTERM stops it cleanly.",
        "examples:\n  redflag-appliance serve\n"
        "  redflag-appliance serve --data-dir /var/lib/redflag --host 0.0.0.0 --port 8080",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8080)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Until uvicorn takes the signals over, SIGTERM stops start-up as Ctrl-C does. As
    # PID 1 (in a container) the process would ignore it: the kernel delivers nothing
    # to PID 1 that has no handler, and `docker stop` would wait for its SIGKILL. A stop
    # mid-migration is safe: the migration commits at once or not at all.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = settings_from(args, host=args.host, port=args.port)
    configure_logging(settings.log_level)
    if "MALLOC_ARENA_MAX" not in os.environ:
        limit_malloc_arenas()  # before the database's threads exist
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    wildcard = settings.host in ("0.0.0.0", "::", "")  # noqa: S104 (only compared)
    local_host = "127.0.0.1" if wildcard else settings.host
    url = f"http://{local_host}:{settings.port}"
    with DataDirLock(settings.lock_path, purpose="serve", url=url):
        result = migrate(settings.database_path, settings.backups_dir)
        if result.applied:
            log_event(
                logger,
                logging.INFO,
                "schema.migrated",
                f"schema migrated from version {result.from_version} to {result.to_version}",
                snapshot=str(result.snapshot) if result.snapshot else None,
            )
        # Create or open the keys here, so that a missing key file is one clear line
        # instead of a failed lifespan.
        run_with_database(
            settings, lambda db: open_key_service(db, settings.key_file, initialise=True)
        )
        raise_file_limit()  # each held check-in is an open socket
        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            # Live pages hold a response open; a stop must not wait for them to end.
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        log_event(
            logger,
            logging.INFO,
            "appliance.starting",
            f"RedFlag listening on http://{settings.host}:{settings.port}",
            data_dir=str(settings.data_dir),
            key_file=str(settings.key_file),
        )
        server.run()
        if not server.started:
            raise CliError("the appliance did not start; the log lines above say why")
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app as soon as a stop signal arrives."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn restores the handler it found and raises the caught signal again after
        # a clean stop: SIGTERM's default then ends the process as systemd expects (PID 1
        # ignores it and exits 0), not the start-up handler above as an interruption.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with super().capture_signals():
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        on_stop_signal = getattr(self.config.app.state, "on_stop_signal", None)
        if on_stop_signal is not None:
            on_stop_signal()
        super().handle_exit(sig, frame)
