"""Every pricing model through the API, with hand-computed fees.

Each case publishes a product, sends events through ``POST /v1/events`` for a funded customer and
prices the same events with ``.../simulate``; both must give the literal amounts written here
(the arithmetic is in the comment next to each number). The rounding rule (engine module
docstring): each matched price's exact amount is rounded half up to a whole minor unit, then
clamped by its min_amount/max_amount, and the event's fee is the sum of those amounts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from tests.api.conftest import (
    Keys,
    bearer,
    fund,
    make_asset,
    make_customer,
    new_id,
    publish_product,
    wallet_of,
)

FUNDED = 1_000_000


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


async def simulate(client: httpx.AsyncClient, product: str, version: int, events: list[dict[str, Any]]) -> list[dict]:
    response = await client.post(f"/v1/products/{product}/versions/{version}/simulate", json={"events": events})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def ingest(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> list[dict]:
    response = await client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def bill(
    client: httpx.AsyncClient, prices: list[dict], samples: list[dict[str, Any]], asset: str
) -> list[int]:
    """Publish ``prices``, then charge one event per sample ({data, costs?}) to a fresh customer
    funded with FUNDED; check that simulate agrees and the wallet moved by the sum. Returns the
    fees in sample order."""
    event_type = prices[0]["event_type"]
    product = await publish_product(client, prices)
    customer = await make_customer(client)
    await fund(client, customer, asset, FUNDED)

    simulated = await simulate(client, product, 1, [{"event_type": event_type, **s} for s in samples])
    assert [f["status"] for f in simulated] == ["priced"] * len(samples), simulated
    assert {f["asset"] for f in simulated} == {asset}

    results = await ingest(client, [
        {"id": new_id("ev"), "customer_id": customer, "event_type": event_type, "occurred_at": now(), **s}
        for s in samples
    ])
    assert [r["status"] for r in results] == ["debited"] * len(samples), results
    assert {r["asset"] for r in results} == {asset}
    charged = [r["amount"] for r in results]
    assert charged == [f["amount"] for f in simulated]
    account = await wallet_of(client, customer, asset)
    assert account["posted"] == FUNDED - sum(charged)
    return charged


# --- per_unit and rounding ---------------------------------------------------------------------


async def test_per_unit_fractional_price_rounds_half_up(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("tok")
    prices = [{"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "tokens",
               "unit_price": "0.0001"}]
    fees = await bill(client, prices, [
        {"data": {"tokens": 25_000}},  # 25,000 x 0.0001 = 2.5     -> 3 (half rounds up)
        {"data": {"tokens": 24_999}},  # 24,999 x 0.0001 = 2.4999  -> 2
        {"data": {"tokens": 15_000}},  # 15,000 x 0.0001 = 1.5     -> 2 (half up, not half even)
        {"data": {"tokens": 5_000}},   #  5,000 x 0.0001 = 0.5     -> 1
        {"data": {"tokens": 1_000_000}},  # 1,000,000 x 0.0001 = 100
        {"data": {"tokens": "12345.5"}},  # decimal string: 12,345.5 x 0.0001 = 1.23455 -> 1
    ], usd)
    assert fees == [3, 2, 2, 1, 100, 1]


async def test_per_unit_fee_that_rounds_to_zero_debits_nothing(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("tok")
    product = await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit",
                                              "quantity_field": "tokens", "unit_price": "0.0001"}])
    customer = await make_customer(client)
    await fund(client, customer, usd, 100)
    [result] = await ingest(client, [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                      "occurred_at": now(), "data": {"tokens": 4_999}}])
    # 4,999 x 0.0001 = 0.4999 -> 0: recorded, but no ledger transaction
    assert (result["status"], result["amount"], result["transaction_id"]) == ("debited", 0, None)
    assert (await wallet_of(client, customer, usd))["posted"] == 100
    [fee] = await simulate(client, product, 1, [{"event_type": event_type, "data": {"tokens": 4_999}}])
    assert (fee["amount"], fee["components"][0]["exact_amount"]) == (0, "0.4999")


async def test_per_unit_without_quantity_field_charges_per_event(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    prices = [{"event_type": new_id("call"), "asset": usd, "model": "per_unit", "unit_price": "12.5"}]
    # 1 per event x 12.5 = 12.5 -> 13, whatever the data says
    assert await bill(client, prices, [{"data": {}}, {"data": {"tokens": 99}}], usd) == [13, 13]


# --- package (prorated) ------------------------------------------------------------------------


async def test_package_is_prorated_per_million_tokens(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    prices = [{"event_type": new_id("llm"), "asset": usd, "model": "package", "quantity_field": "tokens",
               "unit_price": "1500", "package_size": 1_000_000}]  # 15.00 USD per 1M tokens
    fees = await bill(client, prices, [
        {"data": {"tokens": 1_500}},      # 1,500 / 1M x 1500 = 2.25         -> 2 (a fraction of a package)
        {"data": {"tokens": 333_333}},    # 333,333 / 1M x 1500 = 499.9995   -> 500
        {"data": {"tokens": 1_000_000}},  # exactly one package             -> 1500
        {"data": {"tokens": 2_500_000}},  # 2.5 packages x 1500             -> 3750
        {"data": {"tokens": 1_000}},      # 1,000 / 1M x 1500 = 1.5         -> 2
    ], usd)
    assert fees == [2, 500, 1500, 3750, 2]


# --- tiered (graduated) and volume ------------------------------------------------------------

TIERS = [
    {"up_to": 100, "unit_price": "2", "flat_amount": 10},
    {"up_to": 1000, "unit_price": "1", "flat_amount": 50},
    {"up_to": None, "unit_price": "0.5"},
]

#: Creating a version re-validates ``p.model_dump(exclude_none=True)`` (routers/catalog.py,
#: create_version), which drops the last tier's required ``"up_to": null``.
async def test_tiered_graduated_at_and_above_boundaries(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    prices = [{"event_type": new_id("req"), "asset": usd, "model": "tiered", "quantity_field": "n", "tiers": TIERS}]
    fees = await bill(client, prices, [
        {"data": {"n": 1}},     # 1 x 2 + flat 10                                         = 12
        {"data": {"n": 100}},   # 100 x 2 + 10 (exactly at the boundary: tier 2 untouched) = 210
        {"data": {"n": 101}},   # 210 + 1 x 1 + flat 50                                    = 261
        {"data": {"n": 1000}},  # 210 + 900 x 1 + 50                                       = 1160
        {"data": {"n": 1001}},  # 1160 + 1 x 0.5 = 1160.5                                  -> 1161
        {"data": {"n": 1500}},  # 1160 + 500 x 0.5                                         = 1410
        {"data": {"n": 0}},     # no unit touches a tier                                   = 0
    ], usd)
    assert fees == [12, 210, 261, 1160, 1161, 1410, 0]


async def test_tiered_simulate_reports_exact_amount_and_quantity(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("req")
    product = await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "tiered",
                                              "quantity_field": "n", "tiers": TIERS}])
    [fee] = await simulate(client, product, 1, [{"event_type": event_type, "data": {"n": 1001}}])
    assert fee["components"] == [
        {"price_index": 0, "quantity": "1001", "exact_amount": "1160.5", "charged_amount": "1160.5"}]
    assert (fee["status"], fee["asset"], fee["amount"], fee["error"]) == ("priced", usd, 1161, None)


async def test_volume_prices_every_unit_at_the_tier_reached(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    tiers = [
        {"up_to": 100, "unit_price": "2"},
        {"up_to": 1000, "unit_price": "1.5", "flat_amount": 20},
        {"up_to": None, "unit_price": "1"},
    ]
    prices = [{"event_type": new_id("req"), "asset": usd, "model": "volume", "quantity_field": "n", "tiers": tiers}]
    fees = await bill(client, prices, [
        {"data": {"n": 100}},   # 100 x 2 (at the boundary: still tier 1)           = 200
        {"data": {"n": 101}},   # all 101 x 1.5 + 20 = 171.5 -> 172 (cheaper than 100!)
        {"data": {"n": 1000}},  # 1000 x 1.5 + 20                                    = 1520
        {"data": {"n": 1001}},  # all 1001 x 1 (last tier)                           = 1001
        {"data": {"n": 0}},     # no usage, no flat fee                              = 0
    ], usd)
    assert fees == [200, 172, 1520, 1001, 0]


# --- percentage (cost-plus) ----------------------------------------------------------------------


async def test_percentage_cost_plus_from_vendor_costs(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    other = await make_asset(client)
    prices = [{"event_type": new_id("llm"), "asset": usd, "model": "percentage", "percentage": "120"}]
    fees = await bill(client, prices, [
        # 250 x 120 / 100 = 300
        {"costs": [{"vendor": "openai", "asset": usd, "amount": 250}]},
        # (100 + 233) x 1.2 = 399.6 -> 400
        {"costs": [{"vendor": "openai", "asset": usd, "amount": 100}, {"vendor": "cohere", "asset": usd, "amount": 233}]},
        # only costs in the price's asset count: 10 x 1.2 = 12
        {"costs": [{"vendor": "openai", "asset": other, "amount": 1000}, {"vendor": "openai", "asset": usd, "amount": 10}]},
        # no costs: quantity 0 -> 0
        {"data": {}},
    ], usd)
    assert fees == [300, 400, 12, 0]


async def test_percentage_from_a_data_field(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    prices = [{"event_type": new_id("resale"), "asset": usd, "model": "percentage", "quantity_field": "upstream",
               "percentage": "150"}]
    fees = await bill(client, prices, [
        {"data": {"upstream": 7}},      # 7 x 150 / 100 = 10.5  -> 11
        {"data": {"upstream": 3}},      # 3 x 1.5 = 4.5         -> 5
        {"data": {"upstream": "2.2"}},  # 2.2 x 1.5 = 3.3       -> 3
        # costs are ignored when the price reads a field: 10 x 1.5 = 15
        {"data": {"upstream": 10}, "costs": [{"vendor": "v", "asset": usd, "amount": 1000}]},
    ], usd)
    assert fees == [11, 5, 3, 15]


# --- min_amount / max_amount ------------------------------------------------------------------


async def test_min_and_max_amount_clamp_the_rounded_fee(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    prices = [{"event_type": new_id("req"), "asset": usd, "model": "per_unit", "quantity_field": "n",
               "unit_price": "0.5", "min_amount": 5, "max_amount": 100}]
    fees = await bill(client, prices, [
        {"data": {"n": 0}},    # 0 -> min 5 (a matched price charges its minimum even for 0)
        {"data": {"n": 9}},    # 9 x 0.5 = 4.5 -> 5 (rounds to exactly the minimum)
        {"data": {"n": 7}},    # 7 x 0.5 = 3.5 -> 4 -> clamped up to 5
        {"data": {"n": 11}},   # 11 x 0.5 = 5.5 -> 6
        {"data": {"n": 199}},  # 199 x 0.5 = 99.5 -> 100 (the maximum exactly)
        {"data": {"n": 250}},  # 125 -> clamped down to 100
    ], usd)
    assert fees == [5, 5, 5, 6, 100, 100]


# --- dimensions ----------------------------------------------------------------------------------


async def test_dimensions_most_specific_wins_with_wildcard_fallback(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    prices = [
        {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "1", "dimensions": {"model": "*"}},
        {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "10", "dimensions": {"model": "gpt-4o"}},
        {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "100",
         "dimensions": {"model": "gpt-4o", "region": "eu"}},
    ]
    fees = await bill(client, prices, [
        {"data": {"model": "small"}},                   # only "*" matches                 -> 1
        {"data": {"model": "gpt-4o"}},                  # exact model beats "*"            -> 10
        {"data": {"model": "gpt-4o", "region": "us"}},  # the eu price does not match      -> 10
        {"data": {"model": "gpt-4o", "region": "eu"}},  # two exact dimensions beat one    -> 100
        {"data": {}},                                   # "*" also matches an absent field -> 1
        {"data": {"region": "eu"}},                     # model absent: only "*" matches   -> 1
    ], usd)
    assert fees == [1, 10, 10, 100, 1, 1]


async def test_equally_specific_dimensions_earlier_price_wins(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    by_region = {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "7",
                 "dimensions": {"model": "*", "region": "eu"}}
    by_model = {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "9",
                "dimensions": {"model": "gpt-4o", "region": "*"}}
    sample = [{"data": {"model": "gpt-4o", "region": "eu"}}]
    assert await bill(client, [by_region, by_model], sample, usd) == [7]
    by_region["event_type"] = by_model["event_type"] = new_id("llm")
    assert await bill(client, [by_model, by_region], sample, usd) == [9]


async def test_no_matching_dimension_is_unmatched_and_free(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    product = await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit",
                                              "unit_price": "10", "dimensions": {"model": "gpt-4o"}}])
    customer = await make_customer(client)
    await fund(client, customer, usd, 100)
    [result] = await ingest(client, [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                      "occurred_at": now(), "data": {"model": "small"}}])
    assert (result["status"], result["amount"], result["transaction_id"]) == ("unmatched", 0, None)
    [fee] = await simulate(client, product, 1, [{"event_type": event_type, "data": {"model": "small"}}])
    assert (fee["status"], fee["amount"]) == ("unmatched", 0)
    assert (await wallet_of(client, customer, usd))["posted"] == 100


# --- several metrics ----------------------------------------------------------------------------


async def test_input_and_output_tokens_are_summed_then_rounded_once(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    prices = [
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "input_tokens", "unit_price": "0.001"},
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "output_tokens", "unit_price": "0.003"},
    ]
    fees = await bill(client, prices, [
        # 1500 x 0.001 = 1.5, 500 x 0.003 = 1.5: 3.0 -> 3 (once per event; per price would give 4)
        {"data": {"input_tokens": 1500, "output_tokens": 500}},
        # 10,000 x 0.001 = 10, 2,000 x 0.003 = 6: 16
        {"data": {"input_tokens": 10_000, "output_tokens": 2_000}},
        # 400 x 0.001 = 0.4, 100 x 0.003 = 0.3: 0.7 -> 1 (per price would give 0 + 0 = 0)
        {"data": {"input_tokens": 400, "output_tokens": 100}},
    ], usd)
    assert fees == [3, 16, 1]


async def test_missing_metric_rejects_the_whole_event(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    product = await publish_product(client, [
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "input_tokens", "unit_price": "1"},
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "output_tokens", "unit_price": "1"},
    ])
    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    [result] = await ingest(client, [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                      "occurred_at": now(), "data": {"input_tokens": 10}}])
    assert (result["status"], result["amount"]) == ("rejected", 0)
    assert "output_tokens" in result["error"]
    [fee] = await simulate(client, product, 1, [{"event_type": event_type, "data": {"input_tokens": 10}}])
    assert (fee["status"], fee["amount"]) == ("rejected", 0)
    assert (await wallet_of(client, customer, usd))["posted"] == 1000


# --- custom asset ---------------------------------------------------------------------------------


async def test_price_in_a_custom_credits_asset(client: httpx.AsyncClient) -> None:
    credits = await make_asset(client, scale=0, kind="custom")
    event_type = new_id("image")
    prices = [{"event_type": event_type, "asset": credits, "model": "per_unit", "quantity_field": "images",
               "unit_price": "2.5"}]
    fees = await bill(client, prices, [
        {"data": {"images": 3}},  # 3 x 2.5 = 7.5 -> 8 credits
        {"data": {"images": 1}},  # 2.5 -> 3 credits
        {"data": {"images": 4}},  # 10 credits
    ], credits)
    assert fees == [8, 3, 10]  # the wallet went from 1,000,000 to 999,979 credits (checked in bill)


async def test_custom_asset_prices_leave_the_fiat_wallet_alone(client: httpx.AsyncClient) -> None:
    credits = await make_asset(client, scale=0, kind="custom")
    usd = await make_asset(client)
    event_type = new_id("image")
    await publish_product(client, [{"event_type": event_type, "asset": credits, "model": "per_unit", "unit_price": "4"}])
    customer = await make_customer(client)
    await fund(client, customer, credits, 10)
    await fund(client, customer, usd, 500)
    [result] = await ingest(client, [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                      "occurred_at": now()}])
    assert (result["status"], result["asset"], result["amount"]) == ("debited", credits, 4)
    assert (await wallet_of(client, customer, credits))["posted"] == 6  # 10 - 4
    assert (await wallet_of(client, customer, usd))["posted"] == 500


# --- simulate -------------------------------------------------------------------------------------


async def test_simulate_prices_a_draft_and_touches_no_wallet(client: httpx.AsyncClient, keys: Keys) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    product = new_id("prod")
    assert (await client.post("/v1/products", json={"code": product, "name": product})).status_code == 201
    draft = await client.post(f"/v1/products/{product}/versions", json={"prices": [
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "tokens", "unit_price": "0.002"},
    ]})
    assert draft.status_code == 201, draft.text
    assert (draft.json()["version"], draft.json()["status"]) == (1, "draft")

    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    before = (await client.get(f"/v1/customers/{customer}/transactions")).json()["data"]

    response = await client.post(
        f"/v1/products/{product}/versions/1/simulate",
        json={"events": [
            {"event_type": event_type, "data": {"tokens": 1250}},   # 1250 x 0.002 = 2.5 -> 3
            {"event_type": event_type, "data": {"tokens": 50_000}},  # 100
            {"event_type": new_id("other"), "data": {}},            # not priced by this version
        ]},
        headers=bearer(keys.read),  # simulate is a read
    )
    assert response.status_code == 200, response.text
    fees = response.json()["data"]
    assert [(f["status"], f["amount"]) for f in fees] == [("priced", 3), ("priced", 100), ("unmatched", 0)]

    assert await wallet_of(client, customer, usd) == {"asset": usd, "posted": 1000, "held": 0, "available": 1000,
                                                      "overdraft_limit": 0}
    assert (await client.get(f"/v1/customers/{customer}/transactions")).json()["data"] == before
    # still a draft, and not used for billing
    assert (await client.get(f"/v1/products/{product}/versions/1")).json()["status"] == "draft"
    [result] = await ingest(client, [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                      "occurred_at": now(), "data": {"tokens": 1250}}])
    assert (result["status"], result["amount"]) == ("unmatched", 0)
    assert (await wallet_of(client, customer, usd))["posted"] == 1000


async def test_simulate_unknown_version_or_product_is_404(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    product = await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "1"}])
    body = {"events": [{"event_type": event_type, "data": {}}]}
    missing_version = await client.post(f"/v1/products/{product}/versions/9/simulate", json=body)
    missing_product = await client.post(f"/v1/products/{new_id('nope')}/versions/1/simulate", json=body)
    for response in (missing_version, missing_product):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
