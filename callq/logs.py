"""Log lines that carry the call they are about, mask phone numbers, and can be JSON.

Every record gets ``request_id`` and ``campaign`` from the task being run (a context
variable set by the task, so each worker thread has its own). Any run of 8 or more digits,
with or without a leading ``+``, is masked to its last 4 digits in the final line, whatever
logged it: a phone number never reaches the logs whole. Secrets are never logged to begin
with; this is the second line of defence for numbers only.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from callq.ids import campaign_of

current_request: ContextVar[str] = ContextVar("current_request", default="")

# 10 to 13 digits in a row, not part of a longer word (a Sid, a request id's digest):
# 9052161119, 09052161119, 919052161119, +919052161119.
_PHONE = re.compile(r"(?<![\w.])(\+?)(\d{6,9})(\d{4})(?![\w])")


def mask_numbers(text: str) -> str:
    """``+919052161119`` -> ``+********1119``; timestamps and short numbers are left alone."""
    return _PHONE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


class RequestContext(logging.Filter):
    """Adds ``request_id`` and ``campaign`` (``-`` outside a task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = current_request.get()
        record.request_id = rid or "-"
        try:
            record.campaign = campaign_of(rid) if rid else "-"
        except ValueError:
            record.campaign = "-"
        return True


class MaskingFormatter(logging.Formatter):
    """The usual text format, with phone numbers masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_numbers(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, campaign."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "campaign": getattr(record, "campaign", "-"),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return mask_numbers(json.dumps(data, ensure_ascii=False))


TEXT_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] [%(campaign)s %(request_id)s] %(message)s"
)


def install(logger: logging.Logger, fmt: str = "text") -> None:
    """Put the context filter and the masking (text or JSON) formatter on every handler."""
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else MaskingFormatter(TEXT_FORMAT)
    )
    for handler in logger.handlers:
        if not any(isinstance(f, RequestContext) for f in handler.filters):
            handler.addFilter(RequestContext())
        handler.setFormatter(formatter)
