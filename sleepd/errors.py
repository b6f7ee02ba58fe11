"""One shallow error hierarchy. HTTP errors carry their status; the API renders every one of
them in the same JSON shape: ``{"error": {"status": int, "code": str, "message": str}}``."""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConfigError",
    "Forbidden",
    "ItemError",
    "ModelLoading",
    "NotFound",
    "SleepdError",
    "Unauthorized",
    "Unavailable",
    "error_body",
]


class SleepdError(Exception):
    """Base of every error sleepd raises on purpose."""

    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SleepdError):
    """Bad configuration: names the key and the value, stops start-up."""

    status = 400
    code = "bad_config"


class BadRequest(SleepdError):
    status = 400
    code = "bad_request"


class Unauthorized(SleepdError):
    status = 401
    code = "unauthorized"


class Forbidden(SleepdError):
    status = 403
    code = "forbidden"


class NotFound(SleepdError):
    status = 404
    code = "not_found"


class Unavailable(SleepdError):
    """A component (daemon, broker, index) cannot be reached now; retrying later may work."""

    status = 503
    code = "unavailable"


class ModelLoading(Unavailable):
    """The daemon is still loading (or exporting) the embedding model: a query cannot be answered
    yet. The CLI waits for it; an API client may retry shortly."""

    code = "model_loading"


class ItemError(SleepdError):
    """One item cannot be enriched (binary, too large, not UTF-8, unreadable). Recorded on the
    item and shown in ``sleepd status``; never stops the daemon."""

    status = 422
    code = "bad_item"


def error_body(status: int, code: str, message: str) -> dict[str, dict[str, object]]:
    """The one JSON error shape of the whole API."""
    return {"error": {"status": status, "code": code, "message": message}}
