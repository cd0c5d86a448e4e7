"""One HTTP attempt of a delivery: sign the body with a fresh timestamp and POST it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from walletflow import __version__
from walletflow.webhooks.schemas import DeliveryJob
from walletflow.webhooks.signing import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
)


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    #: Why the attempt failed without an answer (``ConnectError: ...``); None if one came.
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def headers_for(job: DeliveryJob, timestamp: int | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"walletflow-webhooks/{__version__}",
        SIGNATURE_HEADER: sign(job.body, job.secret, timestamp),
        EVENT_ID_HEADER: str(job.event_id),
        EVENT_TYPE_HEADER: job.event_type,
        DELIVERY_ID_HEADER: str(job.delivery_id),
    }


def new_client(timeout_s: float) -> httpx.AsyncClient:
    """One client per worker: building one costs an SSL context (tens of milliseconds), which
    per attempt would cap deliveries at a few dozen per second. Redirects are not followed (a
    3xx is a failed attempt): the signature was made for this URL's receiver, and a redirect is
    usually a misconfigured URL that the platform should fix."""
    return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)


async def post(http: httpx.AsyncClient, job: DeliveryJob) -> AttemptResult:
    """POST the signed event once (with ``http``'s timeout)."""
    started = time.monotonic()
    try:
        response = await http.post(job.url, content=job.body, headers=headers_for(job))
    except httpx.HTTPError as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", _ms_since(started))
    return AttemptResult(response.status_code, None, _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
