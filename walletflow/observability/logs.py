"""Structured logs: one JSON object per line, with secrets redacted.

``setup_logging`` is called once by ``walletflow api``, ``walletflow worker`` and
``walletflow dev``. The redaction runs on the handler, so it covers every logger (ours, uvicorn's,
Temporal's, the Stripe SDK's) and every field of a record: the formatted message, the traceback
and any ``extra`` values.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter

#: What a secret looks like: walletflow API keys, Stripe secret/restricted keys, webhook signing
#: secrets and the client secrets of PaymentIntents, SetupIntents and Checkout Sessions.
SECRET = re.compile(
    r"\bwf_(?:admin|ingest|read)_[A-Za-z0-9_\-]{8,}"
    r"|\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9_]{4,}"
    r"|\bwhsec_[A-Za-z0-9_]{4,}"
    r"|\b(?:pi|seti|cs(?:_test|_live)?)_[A-Za-z0-9]+_secret_[A-Za-z0-9_]+"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{8,}"
)
REDACTED = "[redacted]"
#: LogRecord attributes that are not ``extra`` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    return SECRET.sub(REDACTED, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value


class RedactSecrets(logging.Filter):
    """Rewrite a record so no secret survives: the message is formatted first (a secret passed as
    an argument is caught too), then every string field is scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: a log filter must never raise
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatted (and scrubbed) already
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.__dict__.pop("color_message", None)  # uvicorn's copy of the message with ANSI colours
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _clean(value))
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that sends every record to stderr, redacted, as JSON (or
    ``text``). Also handed to uvicorn as its ``log_config``, so each of its worker processes
    configures itself the same way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}},
        "formatters": {"main": {"()": json_formatter if fmt == "json" else text_formatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                       "formatter": "main", "filters": ["redact"]},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # uvicorn's loggers keep their own handlers unless told otherwise: send them to the root.
        "loggers": {
            # NOTSET: WALLETFLOW_LOG_LEVEL decides for them too.
            **{name: {"handlers": [], "propagate": True, "level": "NOTSET"}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            # One INFO line per outgoing HTTP call is noise (and would carry URLs): warnings only.
            **{name: {"level": "WARNING"} for name in ("httpx", "httpcore", "stripe")},
        },
    }


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure this process's logging once (api, worker, dev). Calling it again replaces the
    configuration, never adds a second handler."""
    logging.config.dictConfig(logging_config(level, fmt))
