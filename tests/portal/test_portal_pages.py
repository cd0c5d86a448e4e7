"""The portal without a browser, on each backend: sessions, the page's data, refusals."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from tests.conftest import unique_code
from tests.portal.conftest import PORTAL_SECRET, PortalClient, token_of
from walletflow.db.types import utcnow
from walletflow.ledger.service import Ledger
from walletflow.portal import tokens


async def _customer_with_activity(ledger: Ledger, asset: str) -> tuple[uuid.UUID, dt.datetime]:
    """Credited 50.00 (a paid grant) and 12.34 (a gift expiring in 20 days), spent 7.89."""
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}", name="Ada Lovelace")).id
    expires = (utcnow() + dt.timedelta(days=20)).replace(microsecond=0)
    await ledger.credit(customer, asset, 5000, f"p-{uuid.uuid4().hex}:paid")
    await ledger.credit(customer, asset, 1234, f"p-{uuid.uuid4().hex}:gift", source="promotional", expires_at=expires)
    await ledger.debit(customer, asset, 789, f"p-{uuid.uuid4().hex}:usage")
    return customer, expires


async def test_a_session_link_opens_the_customers_page_with_real_data(portal: PortalClient, ledger: Ledger) -> None:
    asset = unique_code("P")
    await ledger.create_asset(asset, "Portal dollars", 2, "fiat")
    customer, expires = await _customer_with_activity(ledger, asset)

    before = utcnow()
    session = await portal.session(customer, return_url="https://app.example/settings/billing")
    expires_at = dt.datetime.fromisoformat(session["expires_at"])
    assert before + dt.timedelta(seconds=598) <= expires_at <= utcnow() + dt.timedelta(seconds=600)
    token = token_of(session["url"])

    page = await portal.http.get(f"/portal/{token}", headers={"Authorization": ""})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert "Ada Lovelace" in html
    # 50.00 + 12.34 - 7.89 = 54.45 available, nothing held
    row = re.search(rf'<tr class="balance" data-asset="{asset}">(.*?)</tr>', html, re.DOTALL)
    assert row is not None
    assert '<td class="available" data-minor="5445">54.45</td>' in row.group(1)
    assert '<td class="held" data-minor="0">0.00</td>' in row.group(1)
    # the gift with its expiry
    assert f'datetime="{expires.isoformat()}"' in html
    grant_rows = re.findall(r'<tr class="grant".*?</tr>', html, re.DOTALL)
    gift = [r for r in grant_rows if "promotional" in r]
    assert len(grant_rows) == 2 and len(gift) == 1
    # the gift expires first, so the usage drew from it (consumption order): 12.34 - 7.89
    assert '<td class="remaining">4.45</td>' in gift[0] and '<td class="of">12.34</td>' in gift[0]
    # the history: the usage debit, signed
    assert 'data-kind="usage"' in html and 'data-minor="-789"' in html
    # the chart: 30 bars, today's holds the spend
    svg = re.search(rf'<svg class="spend-chart" data-asset="{asset}".*?</svg>', html, re.DOTALL)
    assert svg is not None
    assert svg.group(0).count('<rect class="bar"') == 30
    assert f'data-day="{utcnow().date().isoformat()}" data-amount="789"' in svg.group(0)
    assert 'href="https://app.example/settings/billing"' in html


async def test_spend_chart_counts_only_spend_per_day(portal: PortalClient, ledger: Ledger) -> None:
    from walletflow.portal import views

    asset = unique_code("P")
    await ledger.create_asset(asset, "Portal dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, asset, 10_000, f"c-{uuid.uuid4().hex}")
    await ledger.debit(customer, asset, 300, f"d-{uuid.uuid4().hex}")
    await ledger.debit(customer, asset, 200, f"d-{uuid.uuid4().hex}")
    await ledger.debit(customer, asset, 1000, f"adj-{uuid.uuid4().hex}", kind="adjustment")  # not spend
    hold = await ledger.authorize(customer, asset, 400, f"h-{uuid.uuid4().hex}")
    await ledger.capture(hold.id, 150)
    days = await views.daily_spend(portal.app.state.services.engine, customer, asset, utcnow())
    assert len(days) == 30 and days[-1].day == utcnow().date()
    assert days[-1].amount == 300 + 200 + 150
    assert all(d.amount == 0 for d in days[:-1])


async def test_history_is_paginated(portal: PortalClient, ledger: Ledger) -> None:
    asset = unique_code("P")
    await ledger.create_asset(asset, "Portal dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, asset, 100_000, f"c-{uuid.uuid4().hex}")
    for _ in range(52):
        await ledger.debit(customer, asset, 1, f"d-{uuid.uuid4().hex}")
    token = token_of((await portal.session(customer))["url"])
    first = (await portal.http.get(f"/portal/{token}")).text
    assert first.count('class="transaction"') == 50
    older = re.search(r'<a id="older-page" href="([^"]+)"', first)
    assert older is not None
    second = (await portal.http.get(older.group(1).replace("&amp;", "&"))).text
    assert second.count('class="transaction"') == 3  # 2 usage + the credit
    assert 'data-kind="credit"' in second and 'id="older-page"' not in second
    ids = set(re.findall(r'data-transaction="([0-9a-f-]+)"', first)) | set(re.findall(r'data-transaction="([0-9a-f-]+)"', second))
    assert len(ids) == 53


async def test_expired_forged_and_other_customers_links_are_refused(portal: PortalClient, ledger: Ledger) -> None:
    asset = unique_code("P")
    await ledger.create_asset(asset, "Portal dollars", 2, "fiat")
    customer, _ = await _customer_with_activity(ledger, asset)
    secret = PORTAL_SECRET.encode()
    expired = tokens.issue(secret, customer, utcnow() - dt.timedelta(seconds=1))
    forged = tokens.issue(b"not-the-portal-secret-" + b"y" * 32, customer, utcnow() + dt.timedelta(minutes=10))
    valid = token_of((await portal.session(customer))["url"])
    signature = valid.split(".")[1]
    tampered = f"{tokens.issue(secret, uuid.uuid4(), utcnow() + dt.timedelta(minutes=10)).split('.')[0]}.{signature}"
    for token in (expired, forged, tampered, valid + "x", "garbage"):
        page = await portal.http.get(f"/portal/{token}")
        assert page.status_code == 403, token
        assert page.headers["content-type"].startswith("text/html")
        assert "not valid" in page.text and "Ada" not in page.text and asset not in page.text
        wallet = await portal.http.get(f"/portal/{token}/api/wallet")
        assert wallet.status_code == 403
        assert wallet.headers["content-type"] == "application/problem+json"
        assert wallet.json()["code"] == "invalid_portal_link" and asset not in wallet.text

    # Another customer's valid link shows that customer only, and cannot read this one's top-ups.
    other = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}", name="Grace Hopper")).id
    other_token = token_of((await portal.session(other))["url"])
    page = await portal.http.get(f"/portal/{other_token}")
    assert page.status_code == 200
    assert "Grace Hopper" in page.text and "Ada" not in page.text and asset not in page.text
    assert (await portal.http.get(f"/portal/{other_token}/api/wallet")).json() == []
    await _has_usd(ledger)
    top_up, _ = await portal.app.state.services.topups.create(f"tu-{uuid.uuid4().hex}", customer, 500, "USD")
    assert (await portal.http.get(f"/portal/{other_token}/api/top-ups/{top_up.id}")).status_code == 404
    own = await portal.http.get(f"/portal/{valid}/api/top-ups/{top_up.id}")
    assert own.status_code == 200 and own.json()["status"] == "initiated"


async def _has_usd(ledger: Ledger) -> None:
    from walletflow.errors import AlreadyExists

    try:
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
    except AlreadyExists:
        pass


async def test_session_input_is_checked(portal: PortalClient, ledger: Ledger) -> None:
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}")).id
    bad = [
        {"customer_id": "not-a-uuid"},
        {},
        {"customer_id": str(customer), "return_url": "javascript:alert(1)"},
        {"customer_id": str(customer), "return_url": "ftp://files.example/"},
        {"customer_id": str(customer), "return_url": "https://"},
        {"customer_id": str(customer), "return_url": "https://x.example/" + "a" * 2000},
    ]
    for body in bad:
        response = await portal.http.post("/v1/portal/sessions", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"
    missing = await portal.http.post("/v1/portal/sessions", json={"customer_id": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    no_key = await portal.http.post("/v1/portal/sessions", json={"customer_id": str(customer)},
                                    headers={"Authorization": ""})
    assert no_key.status_code == 401
    read_only = await portal.http.post("/v1/portal/sessions", json={"customer_id": str(customer)},
                                       headers={"Authorization": f"Bearer {portal.read_key}"})
    assert read_only.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"asset": "USD", "amount": "0"}, "amount"),
        ({"asset": "USD", "amount": "-5"}, "amount"),
        ({"asset": "USD", "amount": "1.001"}, "amount"),
        ({"asset": "USD", "amount": "NaN"}, "amount"),
        ({"asset": "USD", "amount": "twenty"}, "amount"),
        ({"asset": "usd", "amount": "20"}, "asset"),
        ({"asset": "USD", "amount": "20", "idempotency_key": "short"}, "idempotency_key"),
    ],
)
async def test_portal_top_up_input_is_checked_before_anything_is_written(
    portal: PortalClient, ledger: Ledger, body: dict[str, str], field: str
) -> None:
    await _has_usd(ledger)
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}")).id
    token = token_of((await portal.session(customer))["url"])
    response = await portal.http.post(f"/portal/{token}/api/top-ups",
                                      json={"idempotency_key": uuid.uuid4().hex, **body})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert field in response.text
    from sqlalchemy import func, select

    from walletflow.payments import repository as payments_repo

    async with portal.app.state.services.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(payments_repo.top_ups)
                                    .where(payments_repo.top_ups.c.customer_id == customer))).scalar_one()
    assert count == 0


async def test_customer_text_is_escaped_and_the_secret_never_logged(
    portal: PortalClient, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    customer = (await ledger.create_customer(f"portal-{uuid.uuid4().hex}", name='<script>alert("pwned")</script>')).id
    session = await portal.session(customer, return_url='https://app.example/"><script>alert(1)</script>')
    page = await portal.http.get(f"/portal/{token_of(session['url'])}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page.text
    assert 'href="https://app.example/&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page.text
    await portal.http.get("/portal/forged.token")
    assert PORTAL_SECRET not in caplog.text
