"""Logging set-up for every sleepd process: lines a person reads, or one JSON object per line
for a log collector (``--log-format json`` or ``SLEEPD_LOG_FORMAT=json``; the daemon's worker
inherits the choice through the environment)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

__all__ = ["FORMATS", "JsonFormatter", "setup_logging"]

#: values of --log-format
FORMATS = ("text", "json")
#: libraries whose INFO lines are noise in our log
_NOISY = ("httpx", "watchdog", "celery", "kombu", "sentence_transformers", "urllib3")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the traceback
    when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool = False, log_format: str = "text") -> None:
    """Configure the root logger once for this process, and pass the format on to children."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}; expected one of {FORMATS}")
    os.environ["SLEEPD_LOG_FORMAT"] = log_format  # the embedded worker logs the same way
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # like basicConfig: a process that already logs somewhere (a host application, pytest) keeps it
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
