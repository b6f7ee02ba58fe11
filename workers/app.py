"""The Celery app. Broker from settings: a filesystem transport under SLEEPD_HOME by
default (no server), Redis (or any kombu URL) for a team."""

from __future__ import annotations

import warnings

from celery import Celery
from celery.exceptions import SecurityWarning

from sleepd import defaults
from sleepd.settings import Settings, load_settings

__all__ = ["app", "configure", "current_settings"]

#: kombu's virtual transports poll; 0.1 s keeps a local round trip near 100 ms
POLL_SECONDS = 0.1

app = Celery("sleepd", include=["workers.tasks"])
app.conf.update(
    task_default_queue=defaults.QUEUE,
    # a task is acknowledged after it ran, so a worker killed mid-task leaves it to redeliver;
    # the ledger's lease re-enqueues it as well where a transport cannot redeliver
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)

_settings: list[Settings] = []


def configure(settings: Settings) -> Celery:
    """Point the app at the broker the settings name; returns the app."""
    if _settings and _settings[0].broker_url != settings.broker_url:
        # Celery caches its connection and producer pools on first use; drop them so a
        # process that reconfigures (tests, the bench) talks to the new broker
        app._pool = None
        app.amqp._producer_pool = None
    app.conf.broker_url = settings.broker_url
    options: dict[str, object] = {"polling_interval": POLL_SECONDS}
    app.conf.broker_transport = None
    if settings.broker_url.startswith("filesystem"):
        app.conf.broker_transport = "workers.fs_transport:Transport"  # writes each message whole
        if settings.broker_url == "filesystem://":  # kombu warns of a missing host on every connection
            app.conf.broker_url = "filesystem://localhost//"
        # the embedded worker runs as whoever runs the daemon, root included on a laptop's container;
        # Celery's warning about it is for a shared broker (pickle from strangers), not a local folder
        warnings.filterwarnings("ignore", category=SecurityWarning)
        folder = settings.home / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options.update(data_folder_in=str(folder / "queue"), data_folder_out=str(folder / "queue"),
                       processed_folder=str(folder / "processed"), store_processed=False,
                       control_folder=str(folder / "control"))  # kombu's default is ./control
    elif settings.broker_url.startswith("redis"):
        # a lost worker's task comes back after this long (must exceed the longest task)
        options["visibility_timeout"] = int(settings.lease_seconds) + 60
    app.conf.broker_transport_options = options
    _settings[:] = [settings]
    return app


def current_settings() -> Settings:
    """The settings the app was configured with (loaded from the environment if none)."""
    if not _settings:
        configure(load_settings())
    return _settings[0]
