"""The scheduled runs as Temporal Schedules: what runs, how often, and the idempotent apply.

Like ``temporal_client.py``, one of the few places in the core package that speaks to Temporal.
Each schedule starts its workflow **by name** on the task queue with ``{}`` as its one input
(every scheduled workflow takes a model whose fields all have defaults), and never overlaps
itself: a run still going when the next is due makes the schedule skip that one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from walletflow.settings import Settings

NOTE = "managed by `walletflow schedules apply`"


@dataclass(frozen=True)
class ScheduledRun:
    """One schedule: ``{prefix}-{name}`` starts ``workflow`` every ``interval_s`` seconds."""

    name: str
    workflow: str
    interval_s: int
    description: str
    arg: dict[str, Any] = field(default_factory=dict)

    def schedule_id(self, settings: Settings) -> str:
        return f"{settings.schedule_id_prefix}-{self.name}"


def scheduled_runs(settings: Settings) -> list[ScheduledRun]:
    """Every scheduled run, with its interval from the settings."""
    grant_expiry_s = settings.schedule_grant_expiry_interval_s
    return [
        ScheduledRun("recharge-sweep", "AutoRechargeSweepWorkflow", settings.schedule_recharge_sweep_interval_s,
                     "auto-recharge wallets below their threshold that no signal reached"),
        ScheduledRun("settlement", "UsageSettlementWorkflow", settings.schedule_settlement_interval_s,
                     "settle closed periods: holds, leakage report, usage scoring, postpaid invoices"),
        # The horizon lets one run expire each grant due before the next run at its exact time.
        ScheduledRun("grant-expiry", "GrantExpiryWorkflow", grant_expiry_s,
                     "expire credit grants at their time, remainders to breakage",
                     {"horizon_s": grant_expiry_s}),
        ScheduledRun("webhook-dispatch", "WebhookDispatchWorkflow", settings.schedule_webhook_dispatch_interval_s,
                     "deliver pending platform events to webhook endpoints"),
        ScheduledRun("payments-sweep", "PaymentsSweepWorkflow", settings.schedule_payments_sweep_interval_s,
                     "start top-ups and refunds recorded while Temporal was unreachable"),
    ]


def build_schedule(run: ScheduledRun, settings: Settings) -> Schedule:
    every = dt.timedelta(seconds=run.interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            run.workflow, run.arg, id=run.schedule_id(settings), task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # Skip, never overlap; after downtime run once (not once per missed interval).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, dt.timedelta(minutes=1))),
        state=ScheduleState(note=NOTE),
    )


@dataclass(frozen=True)
class Applied:
    schedule_id: str
    workflow: str
    interval_s: int
    #: ``created`` or ``updated``.
    action: str


async def apply(client: Client, settings: Settings) -> list[Applied]:
    """Create every schedule, or update it to the current definition: running it twice leaves
    the same schedules. An update keeps the schedule's state (an operator's pause and note)."""
    applied = []
    for run in scheduled_runs(settings):
        schedule_id, schedule = run.schedule_id(settings), build_schedule(run, settings)
        try:
            await client.create_schedule(schedule_id, schedule)
            action = "created"
        except ScheduleAlreadyRunningError:

            def keep_state(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                new.state = current.description.schedule.state
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(keep_state)
            action = "updated"
        applied.append(Applied(schedule_id, run.workflow, run.interval_s, action))
    return applied


async def describe(client: Client, settings: Settings, next_runs: int = 3) -> list[dict[str, Any]]:
    """Each schedule as Temporal has it: workflow, interval, paused, next run times, last run."""
    found = []
    for run in scheduled_runs(settings):
        schedule_id = run.schedule_id(settings)
        try:
            desc = await client.get_schedule_handle(schedule_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            found.append({"id": schedule_id, "workflow": run.workflow, "applied": False})
            continue
        action = desc.schedule.action
        intervals = desc.schedule.spec.intervals
        recent = desc.info.recent_actions[-1].started_at.isoformat() if desc.info.recent_actions else None
        found.append({
            "id": schedule_id,
            "applied": True,
            "workflow": action.workflow if isinstance(action, ScheduleActionStartWorkflow) else None,
            "task_queue": action.task_queue if isinstance(action, ScheduleActionStartWorkflow) else None,
            "interval_s": int(intervals[0].every.total_seconds()) if intervals else None,
            "overlap": desc.schedule.policy.overlap.name,
            "paused": desc.schedule.state.paused,
            "next_runs": [t.isoformat() for t in desc.info.next_action_times[:next_runs]],
            "last_run": recent,
            "runs": desc.info.num_actions,
        })
    return found


async def delete_all(client: Client, settings: Settings) -> None:
    """Remove every schedule (tests; an operator uninstalling). Missing ones are fine."""
    for run in scheduled_runs(settings):
        try:
            await client.get_schedule_handle(run.schedule_id(settings)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
