"""What the webhook workflows and their activities exchange (through Temporal's pydantic data
converter). Plain dataclasses with no I/O, so the workflow sandbox can import them.

None of them ever holds an endpoint secret or an event's data: whatever a workflow passes or
returns lands in Temporal's history; activities load both from the database by id. Fields are
only ever added, with defaults, so running workflows keep decoding.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WebhookDispatchInput:
    """Input of ``WebhookDispatchWorkflow``; ``None`` takes the worker's settings
    (``webhook_dispatch_batch_size`` and ``webhook_start_batch_size``)."""

    max_events: int | None = None
    max_starts: int | None = None
    #: Rounds (fan out + start) one run may make while a round filled its batch: a burst
    #: drains in one run instead of one batch per schedule tick, and the run still ends.
    max_rounds: int = 5


@dataclass
class FanOutRequest:
    max_events: int | None = None


@dataclass
class FanOutResult:
    #: Outbox events claimed (marked dispatched) by this run.
    events: int = 0
    #: Delivery rows created for them (an event no endpoint wants creates none).
    deliveries: int = 0
    #: True when the batch was full: more events may be waiting.
    more: bool = False


@dataclass
class StartRequest:
    max_starts: int | None = None


@dataclass
class StartResult:
    #: Delivery workflows started (or found already started by an earlier, interrupted run).
    started: int = 0
    #: True when more unstarted deliveries are waiting than this run was allowed to start.
    more: bool = False


@dataclass
class DispatchReport:
    events: int = 0
    deliveries: int = 0
    started: int = 0
    #: True when the run stopped with work left (its rounds ran out); the next run goes on.
    more: bool = False
    rounds: int = 0


@dataclass
class DeliveryWorkflowInput:
    """Input of ``WebhookDeliveryWorkflow`` (id ``webhook-delivery-{delivery_id}``). The retry
    schedule is fixed when the workflow starts, so a replay sees the same one."""

    delivery_id: str
    max_attempts: int = 12
    initial_interval_s: float = 10.0
    backoff_coefficient: float = 2.0
    max_interval_s: float = 3600.0
    timeout_s: float = 10.0


@dataclass
class DeliveryRef:
    delivery_id: str


@dataclass
class DeliveryOutcome:
    #: ``delivered``, ``failed`` or ``canceled`` (the endpoint was disabled first).
    status: str
    attempts: int = 0
    status_code: int | None = None


@dataclass
class FinishRequest:
    delivery_id: str
    #: ``failed`` (out of attempts) or ``canceled``.
    status: str = "failed"
