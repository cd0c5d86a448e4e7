"""What the auto-recharge threshold trigger adds to every balance update on PostgreSQL.

The trigger on ``accounts`` (migration 0010) runs in every debit's transaction, on every path
(``wf_debit``, ``wf_ingest``, ``wf_authorize``). This measures its cost per updated wallet with
the trigger enabled and disabled, alternating, in a fresh migrated database:

- ``set-based``: one ``UPDATE`` lowering 20,000 wallets at once, the shape of ``wf_ingest``'s
  grouped balance update; a server-side timing of the statement alone, so client round trips
  and commit latency (which dwarf the trigger) do not hide it;
- ``crossing``: the same over wallets that all have an enabled policy and all cross their
  threshold, so every row writes its outbox row (the most the trigger can cost).

Prints microseconds per wallet (best and median of the rounds) for each case, trigger on and off.

Run: ``python -m bench.recharge_trigger [--rounds N] [--wallets N]`` (the PostgreSQL server of
``bench.ledger``; a throw-away database, dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from bench.ledger import fresh_database, with_driver
from walletflow.db.migrate import upgrade_async

SETUP = """
INSERT INTO assets (code, name, scale, kind, created_at) VALUES ('USD', 'US dollar', 2, 'fiat', now());
INSERT INTO customers (id, external_id, metadata, status, billing_mode, insufficient_balance, overdraft_limit,
                       created_at, updated_at)
SELECT gen_random_uuid(), 'bench-' || i, '{}', 'active', 'prepaid', 'reject', 0, now(), now()
  FROM generate_series(1, $WALLETS) i;
INSERT INTO accounts (id, customer_id, asset, posted, held, overdraft_limit, tracks_balance, created_at)
SELECT gen_random_uuid(), id, 'USD', 1000000, 0, 0, true, now() FROM customers;
"""


async def timed(conn: asyncpg.Connection, statement: str) -> float:
    started = time.perf_counter()
    await conn.execute(statement)
    return time.perf_counter() - started


async def run(rounds: int, wallets: int) -> None:
    async with fresh_database() as url:
        await upgrade_async(url)
        conn = await asyncpg.connect(with_driver(url, "postgresql"))
        try:
            await conn.execute(SETUP.replace("$WALLETS", str(wallets)))
            cases = {
                "set-based, no policy": "UPDATE accounts SET posted = posted - 1 WHERE customer_id IS NOT NULL",
                # Threshold just under the balance: every row crosses; the outbox rows are
                # deleted (outside the timing) so the next round crosses again.
                "crossing, every wallet": "UPDATE accounts SET posted = posted - 2 WHERE customer_id IS NOT NULL",
            }
            for label, statement in cases.items():
                results: dict[str, list[float]] = {"trigger on": [], "trigger off": []}
                for _ in range(rounds):
                    for state in results:
                        if label.startswith("crossing"):
                            await conn.execute("UPDATE accounts SET recharge_threshold = posted - posted % 2 - 1"
                                               " WHERE customer_id IS NOT NULL")
                            await conn.execute("DELETE FROM recharge_triggers")
                        action = "ENABLE" if state == "trigger on" else "DISABLE"
                        await conn.execute(f"ALTER TABLE accounts {action} TRIGGER accounts_recharge_threshold")
                        await conn.execute("VACUUM accounts")
                        results[state].append(await timed(conn, statement) / wallets * 1e6)
                        if label.startswith("crossing") and state == "trigger on":
                            written = await conn.fetchval("SELECT count(*) FROM recharge_triggers")
                            if written != wallets:  # the trigger must have fired for every wallet
                                raise SystemExit(f"expected {wallets} outbox rows, found {written}")
                for state, values in results.items():
                    values.sort()
                    print(f"{label:24s} {state:12s} best {values[0]:6.2f} us/wallet   "
                          f"median {values[len(values) // 2]:6.2f} us/wallet")
            print(f"every crossing round with the trigger on wrote {wallets} outbox rows: ok")
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wallets", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.wallets))


if __name__ == "__main__":
    main()
