"""How the processes log: text for a person at a terminal, or one JSON object per line
(OPZ_LOG_FORMAT=json) for a log pipeline, with the access log's fields as keys of their own."""
from __future__ import annotations

import logging
import time
from typing import Any

import orjson

ACCESS = "opz.access"  # one line per answered request, with OPZ_ACCESS_LOG
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# what every LogRecord has: anything else on a record came in through `extra=` and is a field
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra, "exception"}`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        doc: dict[str, Any] = {"time": at, "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str, fmt: str) -> None:
    """The root logger's one handler, in the chosen format; uvicorn's loggers propagate to it
    in JSON mode (serving.processes passes it no logging config of its own then)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
