"""OPZ_LOG_FORMAT=json: one JSON object per line, the access log's fields as keys of their own."""
from __future__ import annotations

import logging

import orjson

from serving.log_format import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("opz.access", logging.INFO, __file__, 1, message, args, None)
    r.__dict__.update(extra)
    return r


def test_a_record_is_one_json_line_with_its_fields() -> None:
    line = JsonFormatter().format(record("%s %d", "GET /health", 200, status=200, operation="health"))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["message"] == "GET /health 200" and doc["level"] == "INFO" and doc["logger"] == "opz.access"
    assert doc["status"] == 200 and doc["operation"] == "health"
    assert doc["time"].endswith("Z") and "T" in doc["time"]
    assert not {"args", "msg", "levelno", "pathname"} & doc.keys()  # no LogRecord internals


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys
        r = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(r)
    assert "\n" not in line and "ValueError: bad" in orjson.loads(line)["exception"]
