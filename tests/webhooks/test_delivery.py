"""Outbound webhooks end to end on a real Temporal dev server: outbox -> dispatch workflow ->
delivery workflows -> a real HTTP receiver that verifies every signature with the public
``verify``. Retry intervals are short here (settings), the receiver's answers are scripted."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select, update
from temporalio.client import WorkflowHistory

from tests.webhooks.conftest import MAX_ATTEMPTS, WebhookStack
from walletflow.ledger.service import Ledger
from walletflow.webhooks.contracts import DeliveryOutcome
from walletflow.webhooks.outbox import emit
from walletflow.webhooks.repository import deliveries, events
from walletflow.webhooks.schemas import delivery_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def emit_event(hooks: WebhookStack, event_type: str, data: dict, customer_id: uuid.UUID | None = None) -> str:
    """Write one event to the outbox, as a producer does; returns its id."""
    key = f"test:{event_type}:{uuid.uuid4()}"
    async with hooks.engine.begin() as conn:
        assert await emit(conn, event_type, data, key, customer_id=customer_id)
        row = (await conn.execute(select(events.c.id).where(events.c.idempotency_key == key))).scalar_one()
    return str(row)


async def deliveries_of(hooks: WebhookStack, event_id: str) -> int:
    async with hooks.engine.connect() as conn:
        query = select(func.count()).select_from(deliveries).where(deliveries.c.event_id == uuid.UUID(event_id))
        return int((await conn.execute(query)).scalar_one())


async def test_a_delivery_verifies_at_the_receiver_and_only_subscribed_types_arrive(hooks: WebhookStack) -> None:
    customer = (await Ledger(hooks.engine).create_customer(f"wh-{uuid.uuid4().hex}")).id
    only_top_ups = hooks.receivers.new()
    everything = hooks.receivers.new()
    top_ups_id = await hooks.register(only_top_ups, ["top_up.succeeded"])
    all_id = await hooks.register(everything, ["*"])

    succeeded = await emit_event(hooks, "top_up.succeeded", {"top_up_id": "t1", "amount": 2000, "currency": "USD"},
                                 customer)
    low = await emit_event(hooks, "balance.low", {"asset": "USD", "available": 150, "threshold": 500}, customer)
    report = await hooks.dispatch()
    assert report.events >= 2 and report.started >= 3

    [delivered] = await hooks.settled(top_ups_id)
    assert delivered.status == "delivered" and delivered.event_type == "top_up.succeeded"
    assert [(a.attempt, a.status_code) for a in delivered.attempts] == [(1, 200)]
    both = await hooks.settled(all_id, count=2, events={succeeded, low})
    assert sorted(d.event_type for d in both) == ["balance.low", "top_up.succeeded"]

    # The receiver verified the signature with the public function and got exactly this.
    assert [e["id"] for e in only_top_ups.verified] == [succeeded]
    event = only_top_ups.verified[0]
    assert set(event) == {"id", "type", "created_at", "customer_id", "data"}
    assert event["type"] == "top_up.succeeded" and event["customer_id"] == str(customer)
    assert event["data"] == {"top_up_id": "t1", "amount": 2000, "currency": "USD"}
    assert event["created_at"].endswith("Z")
    arrival = only_top_ups.arrivals[0]
    assert arrival.headers["walletflow-event-id"] == succeeded
    assert arrival.headers["walletflow-event-type"] == "top_up.succeeded"
    assert arrival.headers["walletflow-delivery-id"] == str(delivered.id)
    assert arrival.headers["walletflow-signature"].startswith("t=")
    # (A "*" endpoint also gets what other tests' workflows emit meanwhile; ours arrived once each.)
    assert [e["id"] for e in everything.verified if e["id"] in (succeeded, low)] in ([succeeded, low], [low, succeeded])
    # The endpoint subscribed to top-ups never got a delivery row for balance.low.
    assert low not in {str(d.event_id) for d in await hooks.webhooks.list_deliveries(uuid.UUID(top_ups_id), 100)}

    # The delivery log over the API, with its attempts.
    log = await hooks.http.get(f"/v1/webhook-endpoints/{top_ups_id}/deliveries")
    assert log.status_code == 200
    [row] = log.json()["data"]
    assert row["status"] == "delivered" and row["workflow_id"] == f"webhook-delivery-{delivered.id}"
    assert [(a["attempt"], a["status_code"]) for a in row["attempts"]] == [(1, 200)]


async def test_retried_on_500_and_delivered_on_the_third_attempt(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new(500, 500)  # then 200
    endpoint = await hooks.register(receiver, ["auto_recharge.failed"])
    event_id = await emit_event(hooks, "auto_recharge.failed", {"asset": "USD", "decline_code": "card_declined"})
    await hooks.dispatch()

    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "delivered" and delivery.attempt_count == 3
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.duration_ms >= 0 for a in delivery.attempts)
    # Every attempt was signed afresh and verified; the body was the same each time.
    assert [a.answered for a in receiver.arrivals] == [500, 500, 200]
    assert all(a.event is not None and a.event["id"] == event_id for a in receiver.arrivals)
    assert len({a.body for a in receiver.arrivals}) == 1
    # The backoff spaced the attempts out (0.2 s, then 0.4 s).
    gaps = [(b.attempted_at - a.attempted_at).total_seconds() for a, b in zip(delivery.attempts, delivery.attempts[1:])]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps


async def test_out_of_attempts_is_failed_with_every_attempt_logged(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new(*[503] * 10)
    endpoint = await hooks.register(receiver, ["wallet.frozen"])
    await emit_event(hooks, "wallet.frozen", {"reason": "usage_spike"})
    await hooks.dispatch()

    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "failed" and delivery.finished_at is not None
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(n, 503) for n in range(1, MAX_ATTEMPTS + 1)]
    assert len(receiver.arrivals) == MAX_ATTEMPTS
    handle = hooks.client.get_workflow_handle(delivery_workflow_id(delivery.id), result_type=DeliveryOutcome)
    assert (await handle.result()).status == "failed"


async def test_an_unreachable_endpoint_logs_the_network_error(hooks: WebhookStack) -> None:
    from tests.services import free_port

    dead = hooks.receivers.new()
    dead.url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    endpoint = await hooks.register(dead, ["hold.expired"])
    await emit_event(hooks, "hold.expired", {"hold_id": "h1"})
    await hooks.dispatch()
    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "failed" and len(delivery.attempts) == MAX_ATTEMPTS
    assert all(a.status_code is None and a.error and a.error.startswith("Connect") for a in delivery.attempts)


async def test_a_tampered_or_stale_request_is_refused_by_the_receiver(hooks: WebhookStack) -> None:
    """What a forger can send (a real delivery's headers with a changed body, or an old
    signature replayed) does not verify at the receiver."""
    from walletflow.webhooks.signing import SignatureVerificationError, sign, verify

    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["grant.expired"])
    await emit_event(hooks, "grant.expired", {"grant_id": "g1", "amount": 500})
    await hooks.dispatch()
    await hooks.settled(endpoint)
    [arrival] = receiver.arrivals
    header = arrival.headers["walletflow-signature"]
    with pytest.raises(SignatureVerificationError, match="no v1"):
        verify(arrival.body.replace(b'"amount":500', b'"amount":50000'), header, receiver.secret)
    stale = sign(arrival.body, receiver.secret, int(time.time()) - 3600)  # a captured request, replayed
    with pytest.raises(SignatureVerificationError) as refused:
        verify(arrival.body, stale, receiver.secret)
    assert refused.value.reason == "expired"


async def test_secrets_and_event_data_stay_out_of_workflow_history(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new(500)  # one failed attempt too: failures are in history
    endpoint = await hooks.register(receiver, ["review.required"])
    marker = f"private-{uuid.uuid4().hex}"
    await emit_event(hooks, "review.required", {"top_up_id": "t9", "note": marker})
    report = await hooks.dispatch()
    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "delivered" and receiver.secret

    histories: list[WorkflowHistory] = [
        await hooks.client.get_workflow_handle(delivery_workflow_id(delivery.id)).fetch_history()
    ]
    async for wf in hooks.client.list_workflows(f"WorkflowType = 'WebhookDispatchWorkflow' AND TaskQueue = '{hooks.settings.task_queue}'"):
        histories.append(await hooks.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
    assert report.started >= 1 and len(histories) >= 2
    for history in histories:
        text = history.to_json()
        assert receiver.secret not in text
        assert receiver.secret.removeprefix("whsec_") not in text
        assert marker not in text
    assert str(delivery.id) in histories[0].to_json()  # the history is the right one, and readable


async def test_dispatch_twice_makes_one_delivery_per_event_and_endpoint(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["balance.depleted"])
    event_id = await emit_event(hooks, "balance.depleted", {"asset": "USD", "available": 0})
    await hooks.dispatch()
    await hooks.dispatch()
    [delivery] = await hooks.settled(endpoint)
    assert await deliveries_of(hooks, event_id) == 1

    # Even if the event looked undispatched again (a second dispatcher racing on a stale read),
    # fanning it out once more creates no second delivery: (event, endpoint) is unique.
    async with hooks.engine.begin() as conn:
        await conn.execute(update(events).where(events.c.id == uuid.UUID(event_id)).values(dispatched_at=None))
    await hooks.dispatch()
    assert await deliveries_of(hooks, event_id) == 1
    assert delivery.status == "delivered" and [e["id"] for e in receiver.verified] == [event_id]

    # A run that started the workflow but crashed before recording it: the next run finds the
    # workflow already done and records it, without sending the event again.
    async with hooks.engine.begin() as conn:
        await conn.execute(update(deliveries).where(deliveries.c.id == delivery.id).values(workflow_started_at=None))
    await hooks.dispatch()
    assert (await hooks.webhooks.get_delivery(delivery.id)).workflow_started_at is not None
    assert len(receiver.arrivals) == 1


async def test_deliveries_left_unstarted_by_a_crash_are_started_by_the_next_run(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["auto_recharge.disabled"])
    event_id = await emit_event(hooks, "auto_recharge.disabled", {"asset": "USD", "consecutive_failures": 3})
    # The fan-out committed (deliveries exist, the event is marked), then the run died before
    # starting any workflow: exactly what the first activity alone leaves behind.
    events_claimed, created = await hooks.webhooks.fan_out(1000)
    assert events_claimed >= 1 and created >= 1
    [pending] = await hooks.webhooks.list_deliveries(uuid.UUID(endpoint), 10)
    assert pending.status == "pending" and pending.workflow_started_at is None
    assert receiver.arrivals == []

    report = await hooks.dispatch()
    assert report.started >= 1
    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "delivered" and [e["id"] for e in receiver.verified] == [event_id]


async def test_a_disabled_endpoint_gets_nothing_new_and_pending_deliveries_are_canceled(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["auto_recharge.succeeded"])
    await emit_event(hooks, "auto_recharge.succeeded", {"amount": 5000})
    await hooks.webhooks.fan_out(1000)  # a delivery exists, its workflow not yet started
    assert (await hooks.http.delete(f"/v1/webhook-endpoints/{endpoint}")).status_code == 200
    await emit_event(hooks, "auto_recharge.succeeded", {"amount": 6000})
    await hooks.dispatch()
    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "canceled" and delivery.attempts == []
    assert receiver.arrivals == []


async def test_an_operator_retries_a_failed_delivery(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new(*[500] * MAX_ATTEMPTS)  # fails every attempt, then recovers
    endpoint = await hooks.register(receiver, ["top_up.failed"])
    event_id = await emit_event(hooks, "top_up.failed", {"top_up_id": "t7", "reason": "card_declined"})
    await hooks.dispatch()
    [failed] = await hooks.settled(endpoint, events={event_id})
    assert failed.status == "failed" and failed.attempt_count == MAX_ATTEMPTS

    url = f"/v1/webhook-endpoints/{endpoint}/deliveries/{failed.id}/retry"
    retried = await hooks.http.post(url)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    await hooks.dispatch()
    [delivery] = await hooks.settled(endpoint, events={event_id})
    assert delivery.status == "delivered"
    assert [a.attempt for a in delivery.attempts] == list(range(1, MAX_ATTEMPTS + 2))
    assert [a.status_code for a in delivery.attempts] == [500] * MAX_ATTEMPTS + [200]
    assert [e["id"] for e in receiver.verified] == [event_id]

    again = await hooks.http.post(url)  # delivered: nothing to retry
    assert again.status_code == 409 and again.json()["code"] == "delivery_not_retryable"
    other = await hooks.http.post(f"/v1/webhook-endpoints/{uuid.uuid4()}/deliveries/{failed.id}/retry")
    assert other.status_code == 404


@pytest.mark.parametrize("args", [[{}], []], ids=["schedule-input", "no-input"])
async def test_the_dispatch_workflow_runs_as_a_schedule_starts_it(hooks: WebhookStack, args: list) -> None:
    """``walletflow schedules apply`` starts the workflow by name with ``{}``; no input works too."""
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["settlement.completed"])
    event_id = await emit_event(hooks, "settlement.completed", {"period": "2026-11-27T10"})
    report = await hooks.client.execute_workflow(
        "WebhookDispatchWorkflow", args=args, id=f"webhook-dispatch-test-{uuid.uuid4().hex}",
        task_queue=hooks.settings.task_queue,
    )
    assert report["events"] >= 1 and report["started"] >= 1
    [delivery] = await hooks.settled(endpoint)
    assert delivery.status == "delivered" and [e["id"] for e in receiver.verified] == [event_id]


async def test_the_delivery_log_is_cursor_paginated_newest_first(hooks: WebhookStack) -> None:
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["hold.expired"])
    ids = [await emit_event(hooks, "hold.expired", {"hold_id": f"h{i}"}) for i in range(5)]
    await hooks.dispatch()
    await hooks.settled(endpoint, count=5)
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await hooks.http.get(f"/v1/webhook-endpoints/{endpoint}/deliveries", params=params)
        assert page.status_code == 200 and len(page.json()["data"]) <= 2
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(d["event_id"] for d in seen) == sorted(ids)
    keys = [(d["created_at"], d["id"]) for d in seen]
    assert keys == sorted(keys, reverse=True)
    assert all(d["status"] == "delivered" and len(d["attempts"]) == 1 for d in seen)
    only_failed = await hooks.http.get(f"/v1/webhook-endpoints/{endpoint}/deliveries", params={"status": "failed"})
    assert only_failed.json()["data"] == []


async def test_a_burst_drains_in_bounded_rounds(hooks: WebhookStack) -> None:
    """Batches of 2 events and 2 starts: one run makes at most ``max_rounds`` rounds, reports
    the work it left, and the next run finishes it."""
    receiver = hooks.receivers.new()
    endpoint = await hooks.register(receiver, ["balance.low"])
    ids = [await emit_event(hooks, "balance.low", {"n": i}) for i in range(7)]
    first = await hooks.dispatch(max_events=2, max_starts=2, max_rounds=2)
    assert first.rounds == 2 and first.more and first.started <= 4
    rest = await hooks.dispatch(max_events=2, max_starts=2, max_rounds=10)
    assert not rest.more and rest.started >= 3
    await hooks.settled(endpoint, count=7)
    assert sorted(e["id"] for e in receiver.verified) == sorted(ids)
