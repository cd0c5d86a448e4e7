"""``GrantExpiryWorkflow``: expire credit grants at their time, remainders to breakage.

Started by its schedule every few minutes. Each run expires what is due (bounded batches; a run
that hits its limit continues as new), then, if the next grant expires before the run's horizon
(the schedule's interval), sleeps until exactly then and expires it: grants expire on time, not
up to an interval late. The ledger's expiry is idempotent, so overlapping or repeated runs move
nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.settlement import SettlementActivities
    from walletflow.settlement.contracts import ExpireGrantsInput, GrantExpiryInput, GrantSweep

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=10)
#: Sweeps per run before continuing as new (keeps the history short).
MAX_SWEEPS = 100
#: A run stops waiting this long before its horizon, so it has finished when the schedule's next
#: run is due (the schedule skips a run while the previous one is still going); that next run
#: expires what falls in the gap, at most this late.
HANDOFF = timedelta(seconds=10)


@workflow.defn(name="GrantExpiryWorkflow")
class GrantExpiryWorkflow:
    @workflow.run
    async def run(self, params: GrantExpiryInput) -> GrantSweep:
        horizon = timedelta(seconds=max(params.horizon_s, 0))
        deadline = workflow.now() + (horizon - HANDOFF if horizon > 2 * HANDOFF else horizon)
        total = GrantSweep()
        for _ in range(MAX_SWEEPS):
            sweep: GrantSweep = await workflow.execute_activity_method(
                SettlementActivities.expire_grants, ExpireGrantsInput(as_of=workflow.now()),
                start_to_close_timeout=timedelta(minutes=10), retry_policy=_RETRY,
            )
            total.expired += sweep.expired
            total.events += sweep.events
            for asset, amount in sweep.breakage.items():
                total.breakage[asset] = total.breakage.get(asset, 0) + amount
            total.next_expiry = sweep.next_expiry
            if sweep.more:
                continue
            if sweep.next_expiry is None or sweep.next_expiry >= deadline:
                return total
            # Sleep until the next grant is due (a durable timer), then sweep again.
            await workflow.sleep(max(sweep.next_expiry - workflow.now(), timedelta(seconds=0)) + timedelta(seconds=1))
        remaining = max(int((deadline - workflow.now()).total_seconds()), 0)
        workflow.continue_as_new(GrantExpiryInput(horizon_s=remaining))
