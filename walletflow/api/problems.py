"""Errors as ``application/problem+json`` (RFC 9457) with a stable machine ``code``.

Bad input of any kind is a 4xx: typed business errors carry their own status, request
validation is 422, unreadable JSON is 400. Only a bug is a 500, and its body says nothing
about internals.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from walletflow.errors import WalletflowError
from walletflow.payments.stripe_gateway import TRANSIENT_STRIPE_ERRORS

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://walletflow.dev/problems/"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail, "code": code}
    body.update(jsonable_encoder(extra))
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _validation_problem(errors: list[Any]) -> JSONResponse:
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
    cleaned = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]
    first = cleaned[0] if cleaned else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    return problem(422, "validation_error", "Invalid request", f"{where}: {first['msg']}", errors=cleaned)


def database_unavailable(exc: BaseException) -> bool:
    """A lost or refused database connection (a restart, a failover), not a bug: ours to retry."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, (ConnectionError, asyncpg.exceptions.ConnectionDoesNotExistError,
                        asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
                        asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError)):
        return True
    # SQLAlchemy's asyncpg adapter wraps the driver's error; the original is its __cause__.
    cause = getattr(exc, "__cause__", None)
    return cause is not None and cause is not exc and database_unavailable(cause)


def install(app: FastAPI) -> None:
    @app.exception_handler(WalletflowError)
    async def _business(_: Request, exc: WalletflowError) -> JSONResponse:
        return problem_for_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(list(exc.errors()))

    @app.exception_handler(PydanticValidationError)
    async def _model(_: Request, exc: PydanticValidationError) -> JSONResponse:
        return _validation_problem(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # e.g. not UTF-8
            return problem(400, "malformed_json", "Malformed JSON", "the request body could not be read as JSON")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return problem_for_exception(exc, request.method, request.url.path)


def problem_for_error(exc: WalletflowError) -> JSONResponse:
    """A typed error as its problem: its own status, code, title and detail."""
    return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)


def problem_for_exception(exc: Exception, method: str, path: str) -> JSONResponse:
    """The answer to any exception: a typed error's own problem; 503 for what a retry may fix;
    else 500."""
    if isinstance(exc, WalletflowError):
        return problem_for_error(exc)
    if isinstance(exc, TRANSIENT_STRIPE_ERRORS):
        log.warning("Stripe unavailable on %s %s: %s", method, path, type(exc).__name__)
        response = problem(503, "stripe_unavailable", "Stripe unavailable",
                           "Stripe did not answer; send the same request again (same idempotency key)")
        response.headers["Retry-After"] = "2"
        return response
    if database_unavailable(exc):
        # Nothing was committed (a transaction either commits or is gone): the same request
        # again is safe, and its idempotency key makes it so even if it was.
        log.warning("database unavailable on %s %s: %s", method, path, type(exc).__name__)
        response = problem(503, "database_unavailable", "Database unavailable",
                           "the database could not be reached; send the same request again")
        response.headers["Retry-After"] = "1"
        return response
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
