"""Log lines: one JSON object a line (TOLLGATE_LOG_FORMAT=json) or text, each line written while a
request is served carrying that request's id; URL passwords masked (decision 0025)."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys

import orjson

from gateway.core.config import Settings

# The id of the request being served in this task; set and reset by the middleware, inherited by
# the tasks a request starts (a settlement shielded from its cancellation, a stream's drain).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# scheme://user:password@host: a database or Redis URL in an error message keeps its user, not its password.
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE)
# What a record carries besides the standard attributes: an access line's fields (`extra={"fields": …}`).
FIELDS = "fields"
TEXT_FORMAT = "%(asctime)s %(process)d %(name)s %(message)s"


def redact(text: str) -> str:
    return URL_PASSWORD.sub(r"\1***@", text)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the context it was logged in (at the call, not
    later when it is written)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": redact(record.getMessage())}
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, FIELDS, None) or {}
        extra = "".join(f" {name}={value}" for name, value in fields.items())
        request_id = getattr(record, "request_id", None)
        return redact(line + extra + (f" request_id={request_id}" if request_id else ""))


def configure(settings: Settings) -> None:
    """Every logger of the process (aiohttp's and asyncio's too) writes through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
