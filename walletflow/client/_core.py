"""The two clients: :class:`AsyncWalletflow` (httpx.AsyncClient) and :class:`Walletflow`
(httpx.Client). Both get every API method from :mod:`walletflow.client._calls`.

Retries: a request that could not connect is sent again (it never left). A request that was
sent but got no answer (timeout, dropped connection) is sent again only when that is safe
(``Call.retry_safe``: reads, and writes that carry an idempotency key or are idempotent by
value) — with the **same** idempotency key, so the server answers the original result instead
of moving money twice. After the last retry, :class:`WalletflowConnectionError` carries the key:
call again with it to learn the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import httpx
from pydantic_core import to_jsonable_python

from walletflow import __version__
from walletflow.client import _calls as calls
from walletflow.client.errors import WalletflowConnectionError, error_from_response
from walletflow.client.models import Page

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 2
#: Seconds before retry n (1-based): 0.25, 0.5, 1, ... capped.
_BACKOFF_S = 0.25
_BACKOFF_CAP_S = 4.0


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": f"walletflow-python/{__version__}"}


def _should_retry(call: calls.Call[Any], exc: httpx.TransportError) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or call.retry_safe


def _result(call: calls.Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_response(response.status_code, body, response.text)
    return call.parse(response.json() if response.content else None)


def _body(call: calls.Call[Any]) -> Any:
    """JSON of the body: UUIDs, datetimes and Decimals (e.g. a unit price) become strings."""
    return None if call.json is None else to_jsonable_python(call.json)


def _delay(attempt: int) -> float:
    return min(_BACKOFF_S * 2 ** (attempt - 1), _BACKOFF_CAP_S)


def _as_async(
    build: Callable[P, calls.Call[T]],
) -> Callable[Concatenate[AsyncWalletflow, P], Coroutine[Any, Any, T]]:
    @functools.wraps(build)
    async def method(self: AsyncWalletflow, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.send(build(*args, **kwargs))

    return method


def _as_sync(build: Callable[P, calls.Call[T]]) -> Callable[Concatenate[Walletflow, P], T]:
    @functools.wraps(build)
    def method(self: Walletflow, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.send(build(*args, **kwargs))

    return method


class AsyncWalletflow:
    """Async client of the walletflow API.

    ``async with AsyncWalletflow("http://127.0.0.1:8000", api_key) as wf: ...``. Amounts are
    integers in the asset's minor unit. Errors raise :class:`~walletflow.client.errors.WalletflowAPIError`
    subclasses. ``http`` lets you pass your own ``httpx.AsyncClient`` (e.g. an ASGI transport in
    tests); the client then sets its base URL and auth header on each request.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self._headers = _headers(api_key)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def send(self, call: calls.Call[T]) -> T:
        """Send one call (with the retries described in the module docstring)."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, self.base_url + call.path, json=_body(call), params=call.params,
                    headers={**self._headers, **call.extra_headers},
                )
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > self.max_retries or not _should_retry(call, exc):
                    raise WalletflowConnectionError(
                        f"{call.method} {call.path}: {type(exc).__name__}: {exc}", call.idempotency_key
                    ) from exc
                await asyncio.sleep(_delay(attempt))
                continue
            return _result(call, response)

    async def paginate(
        self, list_page: Callable[P, Awaitable[Page[T]]], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[T]:
        """Every item of a paginated list, fetching pages as you go:
        ``async for c in wf.paginate(wf.list_customers, limit=100): ...``."""
        cursor = kwargs.pop("cursor", None)
        while True:
            page = await list_page(*args, **{**kwargs, "cursor": cursor})  # type: ignore[arg-type]
            for item in page.data:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    create_asset = _as_async(calls.create_asset)
    get_asset = _as_async(calls.get_asset)
    list_assets = _as_async(calls.list_assets)
    add_asset_rate = _as_async(calls.add_asset_rate)
    list_asset_rates = _as_async(calls.list_asset_rates)
    create_customer = _as_async(calls.create_customer)
    get_customer = _as_async(calls.get_customer)
    find_customer = _as_async(calls.find_customer)
    list_customers = _as_async(calls.list_customers)
    update_customer = _as_async(calls.update_customer)
    freeze_customer = _as_async(calls.freeze_customer)
    unfreeze_customer = _as_async(calls.unfreeze_customer)
    get_wallet = _as_async(calls.get_wallet)
    list_transactions = _as_async(calls.list_transactions)
    list_grants = _as_async(calls.list_grants)
    create_adjustment = _as_async(calls.create_adjustment)
    subscribe = _as_async(calls.subscribe)
    create_product = _as_async(calls.create_product)
    get_product = _as_async(calls.get_product)
    list_products = _as_async(calls.list_products)
    create_price_version = _as_async(calls.create_price_version)
    list_price_versions = _as_async(calls.list_price_versions)
    get_price_version = _as_async(calls.get_price_version)
    publish_price_version = _as_async(calls.publish_price_version)
    archive_price_version = _as_async(calls.archive_price_version)
    simulate = _as_async(calls.simulate)
    ingest_events = _as_async(calls.ingest_events)
    create_authorization = _as_async(calls.create_authorization)
    get_authorization = _as_async(calls.get_authorization)
    capture_authorization = _as_async(calls.capture_authorization)
    void_authorization = _as_async(calls.void_authorization)
    create_top_up = _as_async(calls.create_top_up)
    get_top_up = _as_async(calls.get_top_up)
    refund_top_up = _as_async(calls.refund_top_up)
    list_refunds = _as_async(calls.list_refunds)
    get_refund = _as_async(calls.get_refund)
    list_reviews = _as_async(calls.list_reviews)
    approve_review = _as_async(calls.approve_review)
    reject_review = _as_async(calls.reject_review)
    create_webhook_endpoint = _as_async(calls.create_webhook_endpoint)
    list_webhook_endpoints = _as_async(calls.list_webhook_endpoints)
    get_webhook_endpoint = _as_async(calls.get_webhook_endpoint)
    disable_webhook_endpoint = _as_async(calls.disable_webhook_endpoint)
    enable_webhook_endpoint = _as_async(calls.enable_webhook_endpoint)
    rotate_webhook_secret = _as_async(calls.rotate_webhook_secret)
    list_webhook_deliveries = _as_async(calls.list_webhook_deliveries)
    retry_webhook_delivery = _as_async(calls.retry_webhook_delivery)
    margin_report = _as_async(calls.margin_report)


class Walletflow:
    """Blocking client of the walletflow API, with the same methods as :class:`AsyncWalletflow`.

    ``with Walletflow("http://127.0.0.1:8000", api_key) as wf: wf.get_wallet(customer_id)``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self._headers = _headers(api_key)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout)

    def send(self, call: calls.Call[T]) -> T:
        """Send one call (with the retries described in the module docstring)."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, self.base_url + call.path, json=_body(call), params=call.params,
                    headers={**self._headers, **call.extra_headers},
                )
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > self.max_retries or not _should_retry(call, exc):
                    raise WalletflowConnectionError(
                        f"{call.method} {call.path}: {type(exc).__name__}: {exc}", call.idempotency_key
                    ) from exc
                time.sleep(_delay(attempt))
                continue
            return _result(call, response)

    def paginate(self, list_page: Callable[P, Page[T]], *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        """Every item of a paginated list: ``for c in wf.paginate(wf.list_customers): ...``."""
        cursor = kwargs.pop("cursor", None)
        while True:
            page = list_page(*args, **{**kwargs, "cursor": cursor})  # type: ignore[arg-type]
            yield from page.data
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    create_asset = _as_sync(calls.create_asset)
    get_asset = _as_sync(calls.get_asset)
    list_assets = _as_sync(calls.list_assets)
    add_asset_rate = _as_sync(calls.add_asset_rate)
    list_asset_rates = _as_sync(calls.list_asset_rates)
    create_customer = _as_sync(calls.create_customer)
    get_customer = _as_sync(calls.get_customer)
    find_customer = _as_sync(calls.find_customer)
    list_customers = _as_sync(calls.list_customers)
    update_customer = _as_sync(calls.update_customer)
    freeze_customer = _as_sync(calls.freeze_customer)
    unfreeze_customer = _as_sync(calls.unfreeze_customer)
    get_wallet = _as_sync(calls.get_wallet)
    list_transactions = _as_sync(calls.list_transactions)
    list_grants = _as_sync(calls.list_grants)
    create_adjustment = _as_sync(calls.create_adjustment)
    subscribe = _as_sync(calls.subscribe)
    create_product = _as_sync(calls.create_product)
    get_product = _as_sync(calls.get_product)
    list_products = _as_sync(calls.list_products)
    create_price_version = _as_sync(calls.create_price_version)
    list_price_versions = _as_sync(calls.list_price_versions)
    get_price_version = _as_sync(calls.get_price_version)
    publish_price_version = _as_sync(calls.publish_price_version)
    archive_price_version = _as_sync(calls.archive_price_version)
    simulate = _as_sync(calls.simulate)
    ingest_events = _as_sync(calls.ingest_events)
    create_authorization = _as_sync(calls.create_authorization)
    get_authorization = _as_sync(calls.get_authorization)
    capture_authorization = _as_sync(calls.capture_authorization)
    void_authorization = _as_sync(calls.void_authorization)
    create_top_up = _as_sync(calls.create_top_up)
    get_top_up = _as_sync(calls.get_top_up)
    refund_top_up = _as_sync(calls.refund_top_up)
    list_refunds = _as_sync(calls.list_refunds)
    get_refund = _as_sync(calls.get_refund)
    list_reviews = _as_sync(calls.list_reviews)
    approve_review = _as_sync(calls.approve_review)
    reject_review = _as_sync(calls.reject_review)
    create_webhook_endpoint = _as_sync(calls.create_webhook_endpoint)
    list_webhook_endpoints = _as_sync(calls.list_webhook_endpoints)
    get_webhook_endpoint = _as_sync(calls.get_webhook_endpoint)
    disable_webhook_endpoint = _as_sync(calls.disable_webhook_endpoint)
    enable_webhook_endpoint = _as_sync(calls.enable_webhook_endpoint)
    rotate_webhook_secret = _as_sync(calls.rotate_webhook_secret)
    list_webhook_deliveries = _as_sync(calls.list_webhook_deliveries)
    retry_webhook_delivery = _as_sync(calls.retry_webhook_delivery)
    margin_report = _as_sync(calls.margin_report)
