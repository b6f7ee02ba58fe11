"""kombu's filesystem transport, with whole-file message writes.

kombu creates a message file and then writes it; a worker polling in between moves the empty
file away, fails to parse it, and Celery stops the worker with the task lost (seen in the daemon
test under load; the ledger's lease would bring it back, minutes later). Here each message is
written under a temporary name in a sibling folder and renamed into the queue folder, so a reader
sees the whole message or nothing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport"]


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's order and queue suffix
        queue_dir = Path(self.data_folder_out)
        staging = queue_dir.parent / (queue_dir.name + ".staging")
        staging.mkdir(exist_ok=True)
        temp = staging / name
        try:
            with open(temp, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(temp, queue_dir / name)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory {queue_dir}") from exc


class Transport(filesystem.Transport):
    Channel = Channel
