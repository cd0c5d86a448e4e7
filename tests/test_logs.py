"""Structured logs: one JSON object per line, and no secret ever reaches them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import walletflow
from walletflow.observability.logs import RedactSecrets, json_formatter, setup_logging

SECRETS = [
    "wf_admin_Q1w2E3r4T5y6U7i8O9p0aSdFgHjKlZxCvBnM1234567",
    "sk_test_51HxYzAbCdEf123",
    "sk_live_abcdef123456",
    "rk_live_abcdef123456",
    "whsec_walletflow_dev_0123456789abcdef",
    "pi_3PqRsT1234567890_secret_AbCdEf123456",
    "seti_1ABCdef_secret_XYZ987",
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("walletflow.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_in_a_log_line_comes_out_redacted(captured: io.StringIO, secret: str) -> None:
    log = logging.getLogger("walletflow.test.logs")
    log.info("in the message %s", secret)
    log.info("as an argument: %s", secret)
    log.warning("in an extra field", extra={"detail": f"key={secret}", "nested": {"list": [secret]}})
    try:
        raise RuntimeError(f"Stripe said no to {secret}")
    except RuntimeError:
        log.exception("with a traceback")
    out = captured.getvalue()
    assert secret not in out
    records = lines(captured)
    assert len(records) == 4 and all(r["logger"] == "walletflow.test.logs" for r in records)
    assert records[0]["message"] == "in the message [redacted]"
    assert records[1]["message"] == "as an argument: [redacted]"
    assert records[2]["detail"] == "key=[redacted]" and records[2]["nested"] == {"list": ["[redacted]"]}
    assert "RuntimeError: Stripe said no to [redacted]" in str(records[3]["exc_info"])


def test_ids_that_are_not_secrets_are_kept(captured: io.StringIO) -> None:
    """Ids are what an operator searches logs for: only secrets go."""
    logging.getLogger("walletflow.test.logs").info("paid pi_3PqRsT1234567890 for cus_Abc123 top-up topup-42 key wf_admin")
    assert lines(captured)[0]["message"] == "paid pi_3PqRsT1234567890 for cus_Abc123 top-up topup-42 key wf_admin"


def test_the_database_functions_the_code_calls_keep_their_names_in_logs(captured: io.StringIO) -> None:
    """A database error names its function: ``wf_ingest_optimistic`` looked like an ingest key
    and was blanked out of every log line (renamed in migration 0022)."""
    source = "\n".join(p.read_text() for p in Path(walletflow.__file__).parent.rglob("*.py") if "migrations" not in p.parts)
    names = sorted(set(re.findall(r"\b(wf_[a-z]+(?:_[a-z]+)*)\b", source)))
    assert "wf_optimistic_ingest" in names and "wf_debit_many" in names
    logging.getLogger("walletflow.test.logs").info(" ".join(names))
    assert lines(captured)[0]["message"] == " ".join(names)


def test_setup_logging_sends_every_logger_to_one_redacting_json_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # as an earlier uvicorn.Config may leave it
    try:
        setup_logging("INFO", "json")
        setup_logging("INFO", "json")  # twice: still one handler
        assert len(root.handlers) == 1
        logging.getLogger("uvicorn.error").info("started with %s", SECRETS[0])
        logging.getLogger("httpx").info("GET https://api.stripe.com/v1/x")  # quietened to warnings
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert json.loads(err[0]) == {**json.loads(err[0]), "logger": "uvicorn.error", "level": "INFO",
                                      "message": "started with [redacted]"}
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
