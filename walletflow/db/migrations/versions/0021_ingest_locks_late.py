"""ingest locks late: ``wf_ingest_optimistic`` writes a usage batch first and holds wallet locks
only to check and apply it

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-28

``wf_ingest`` locks every wallet of a batch first and keeps the locks until commit. A batch of
1,000 events over 1,000 customers touches about 630 wallets, so any two batches share wallets
and PostgreSQL ran them one after the other: in bench.ingest the database used one core of two
while the API server waited, whatever the number of clients.

``wf_ingest_optimistic`` takes the same batch and gives the same answers under the same rules
(0017's), in another order:

1. wallets that do not exist yet are created (as ``wf_ingest``);
2. without wallet locks, the batch is planned on the statement's snapshot (duplicates, frozen
   wallets, which events fit, which grants each debit draws from) and its rows are written:
   ledger transactions, entries, usage events, vendor costs. The plan is kept: each wallet's
   total, its spendable amount as read, whether any event was refused for funds, whether it was
   frozen; each grant's total draw;
3. the batch's wallets are locked in account id order (as everywhere), their expired holds
   released;
4. the plan is checked against the locked rows. It still holds when, for every wallet, the
   frozen state is unchanged, the total still fits, and, if an event was refused for funds, the
   spendable amount is exactly as read (the refusal depended on it); and when filling each
   wallet's total into its grants, in consumption order, as they are now, takes the same amount
   from the same grants (then every debit's slice of the grants is the same too). A batch
   whose plan holds is exactly the batch ``wf_ingest`` would have written after whatever
   committed in between, so the balances and grant remainders are lowered by the plan's totals;
5. a plan that no longer holds raises SQLSTATE 40001 (serialization_failure): the statement,
   with everything it wrote, is rolled back, and the caller runs the batch through
   ``wf_ingest``, which plans under the locks.

Locks are held for steps 3-5 and the commit instead of the whole batch, so two batches over
the same wallets overlap their planning and writing.
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

WF_INGEST_OPTIMISTIC = r"""
CREATE OR REPLACE FUNCTION wf_ingest_optimistic(p_events jsonb, p_now timestamptz)
RETURNS TABLE (idx int, outcome text, amount bigint, transaction_id uuid)
LANGUAGE plpgsql
-- Every table this function reads or changes is reached by key (a wallet, a grant, an event id):
-- with statistics that lag behind (autovacuum late or off, tables full of superseded row
-- versions) the planner took sequential scans of every account and grant, under the locks.
-- Join methods are switched off below for the locked part alone; declared here so that the
-- caller's settings come back when the function returns.
SET enable_seqscan = off
SET enable_hashjoin = on
SET enable_mergejoin = on
AS $$
DECLARE
    -- the results, per event
    r_idx int[];
    r_outcome text[];
    r_amount bigint[];
    r_tx uuid[];
    -- the plan, per wallet with events to settle
    w_account uuid[];
    w_total bigint[];
    w_strict boolean[];
    w_spendable bigint[];
    w_frozen boolean[];
    -- the plan, per grant drawn from
    g_id uuid[];
    g_total bigint[];
    v_stale bigint;
    -- looked up once: pg_get_serial_sequence per event cost 1.5 ms per 1,000
    v_event_ids regclass := pg_get_serial_sequence('usage_events', 'id')::regclass;
BEGIN
    INSERT INTO accounts (id, customer_id, asset, posted, held, overdraft_limit, tracks_balance, created_at)
    SELECT gen_random_uuid(), c.id, w.asset, 0, 0,
           CASE WHEN c.insufficient_balance = 'overdraft' THEN c.overdraft_limit ELSE 0 END, true, p_now
      FROM (SELECT DISTINCT (e->>'customer_id')::uuid AS customer_id, e->>'asset' AS asset
              FROM jsonb_array_elements(p_events) e) w
      JOIN customers c ON c.id = w.customer_id
     -- only the missing ones: ON CONFLICT alone made a row (and a uuid) for every wallet first
     WHERE NOT EXISTS (SELECT 1 FROM accounts ex WHERE ex.customer_id = w.customer_id AND ex.asset = w.asset)
    ON CONFLICT DO NOTHING;

    -- Plan and write, unlocked. The CTEs up to new_costs are wf_ingest's (0017) without its
    -- balance and grant updates, which wait for the locks below.
    WITH RECURSIVE ev AS (
        SELECT x.* FROM jsonb_to_recordset(p_events) AS x(
            idx int, customer_id uuid, event_id text, event_type text, occurred_at timestamptz,
            asset text, amount bigint, product_code text, version int, data jsonb, costs jsonb)
    ),
    dup AS (
        SELECT ev.idx, u.amount, u.transaction_id
          FROM ev JOIN usage_events u ON u.customer_id = ev.customer_id AND u.event_id = ev.event_id
    ),
    live AS (
        SELECT ev.*, a.id AS account_id, a.posted - a.held + a.overdraft_limit AS spendable,
               c.status = 'frozen' AS frozen
          FROM ev
          CROSS JOIN LATERAL (SELECT ac.id, ac.posted, ac.held, ac.overdraft_limit FROM accounts ac
                               WHERE ac.customer_id = ev.customer_id AND ac.asset = ev.asset LIMIT 1) a
          CROSS JOIN LATERAL (SELECT cu.status FROM customers cu WHERE cu.id = ev.customer_id LIMIT 1) c
         WHERE NOT EXISTS (SELECT 1 FROM dup WHERE dup.idx = ev.idx)
    ),
    ranked AS (
        SELECT l.*, row_number() OVER (PARTITION BY l.account_id ORDER BY l.idx) AS rn
          FROM live l WHERE NOT l.frozen
    ),
    walk (account_id, rn, idx, taken, left_after) AS (
        SELECT r.account_id, r.rn, r.idx, r.amount <= r.spendable,
               CASE WHEN r.amount <= r.spendable THEN r.spendable - r.amount ELSE r.spendable END
          FROM ranked r WHERE r.rn = 1
        UNION ALL
        SELECT r.account_id, r.rn, r.idx, r.amount <= w.left_after,
               CASE WHEN r.amount <= w.left_after THEN w.left_after - r.amount ELSE w.left_after END
          FROM walk w JOIN ranked r ON r.account_id = w.account_id AND r.rn = w.rn + 1
    ),
    accepted AS (
        SELECT r.*, sum(r.amount) OVER (PARTITION BY r.account_id ORDER BY r.idx) AS running,
               gen_random_uuid() AS tx_id,
               nextval(v_event_ids) AS event_row_id
          FROM ranked r JOIN walk w ON w.idx = r.idx
         WHERE w.taken
    ),
    debits AS (
        SELECT a.*, a.running - a.amount AS slice_start FROM accepted a WHERE a.amount > 0
    ),
    slices AS (
        SELECT d.tx_id, d.account_id, d.asset, d.running, d.slice_start AS debit_start,
               s.grant_id, s.slice_start, s.slice_end, COALESCE(s.total, 0) AS total
          FROM debits d
          LEFT JOIN LATERAL (
               SELECT g.id AS grant_id,
                      sum(g.remaining) OVER w - g.remaining AS slice_start,
                      sum(g.remaining) OVER w AS slice_end,
                      sum(g.remaining) OVER () AS total
                 FROM credit_grants g
                WHERE g.account_id = d.account_id AND g.remaining > 0
                  AND (g.status || '') IN ('active', 'expired')
               WINDOW w AS (ORDER BY CASE WHEN g.expires_at IS NOT NULL AND g.expires_at <= p_now THEN 0 ELSE 1 END,
                                     g.priority, g.expires_at NULLS LAST, g.created_at, g.id)
          ) s ON true
    ),
    draws AS (
        SELECT s.tx_id, s.account_id, s.asset, s.grant_id,
               LEAST(s.running, s.slice_end) - GREATEST(s.debit_start, s.slice_start) AS amount
          FROM slices s
         WHERE s.grant_id IS NOT NULL AND s.slice_start < s.running AND s.slice_end > s.debit_start
        UNION ALL
        SELECT DISTINCT ON (s.tx_id) s.tx_id, s.account_id, s.asset, NULL::uuid,
               s.running - GREATEST(s.debit_start, s.total)
          FROM slices s
         WHERE s.running > s.total
    ),
    new_transactions AS (
        INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, metadata, created_at)
        SELECT d.tx_id, 'usage', 'event:' || d.customer_id || ':' || d.event_id,
               encode(sha256(convert_to('event:' || d.customer_id || ':' || d.event_id || ':' || d.asset || ':' || d.amount, 'UTF8')), 'hex'),
               jsonb_build_object('event_id', d.event_id, 'event_type', d.event_type,
                                  'product', d.product_code, 'version', d.version),
               p_now
          FROM debits d
    ),
    new_entries AS (
        INSERT INTO ledger_entries (transaction_id, account_id, asset, amount, grant_id, created_at)
        SELECT dr.tx_id, dr.account_id, dr.asset, -dr.amount, dr.grant_id, p_now FROM draws dr
        UNION ALL
        SELECT d.tx_id, r.id, d.asset, d.amount, NULL, p_now
          FROM debits d JOIN accounts r ON r.system_code = 'revenue' AND r.asset = d.asset
    ),
    new_events AS (
        INSERT INTO usage_events (id, customer_id, event_id, event_type, occurred_at, received_at,
                                  product_code, version, asset, amount, transaction_id, data)
        SELECT a.event_row_id, a.customer_id, a.event_id, a.event_type, a.occurred_at, p_now, a.product_code,
               a.version, a.asset, a.amount, CASE WHEN a.amount > 0 THEN a.tx_id END, COALESCE(a.data, '{}'::jsonb)
          FROM accepted a
    ),
    new_costs AS (
        INSERT INTO usage_costs (usage_event_id, vendor, asset, amount)
        SELECT a.event_row_id, c.vendor, c.asset, c.amount
          FROM accepted a
         CROSS JOIN LATERAL jsonb_to_recordset(a.costs) AS c(vendor text, asset text, amount bigint)
         WHERE a.costs IS NOT NULL AND jsonb_typeof(a.costs) = 'array'
    ),
    results AS (
        SELECT ev.idx,
               CASE WHEN dup.idx IS NOT NULL THEN 'duplicate'
                    WHEN live.frozen THEN 'wallet_frozen'
                    WHEN accepted.idx IS NOT NULL THEN 'debited'
                    ELSE 'insufficient_funds' END AS outcome,
               COALESCE(dup.amount, ev.amount) AS amount,
               COALESCE(dup.transaction_id, CASE WHEN accepted.amount > 0 THEN accepted.tx_id END) AS tx
          FROM ev
          LEFT JOIN dup ON dup.idx = ev.idx
          LEFT JOIN live ON live.idx = ev.idx
          LEFT JOIN accepted ON accepted.idx = ev.idx
    ),
    wallets AS (
        SELECT l.account_id, COALESCE(sum(a.amount), 0) AS total,
               bool_or(NOT l.frozen AND a.idx IS NULL) AS strict,
               min(l.spendable) AS spendable, bool_or(l.frozen) AS frozen
          FROM live l LEFT JOIN accepted a ON a.idx = l.idx
         GROUP BY l.account_id
    ),
    grant_totals AS (
        SELECT dr.grant_id, sum(dr.amount) AS total FROM draws dr WHERE dr.grant_id IS NOT NULL GROUP BY dr.grant_id
    )
    SELECT rr.i, rr.o, rr.m, rr.t, ww.a, ww.t, ww.s, ww.p, ww.f, gg.g, gg.t
      INTO r_idx, r_outcome, r_amount, r_tx, w_account, w_total, w_strict, w_spendable, w_frozen, g_id, g_total
      FROM (SELECT array_agg(r.idx) AS i, array_agg(r.outcome) AS o, array_agg(r.amount) AS m,
                   array_agg(r.tx) AS t FROM results r) rr,
           (SELECT array_agg(w.account_id) AS a, array_agg(w.total) AS t, array_agg(w.strict) AS s,
                   array_agg(w.spendable) AS p, array_agg(w.frozen) AS f FROM wallets w) ww,
           (SELECT array_agg(g.grant_id) AS g, array_agg(g.total) AS t FROM grant_totals g) gg;

    IF w_account IS NOT NULL THEN
        -- From here on every join is one key probe per wallet or grant: nested loops only (a hash
        -- or merge join read whole indexes of accounts and grants, every superseded row version
        -- included, while holding the locks).
        PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
        PERFORM 1 FROM accounts a WHERE a.id = ANY(w_account) ORDER BY a.id FOR UPDATE;

        WITH expired AS (
            UPDATE holds h SET status = 'expired', resolved_at = p_now
             WHERE h.account_id = ANY(w_account) AND h.status = 'pending' AND h.expires_at <= p_now
            RETURNING h.account_id, h.amount
        )
        UPDATE accounts a SET held = a.held - r.total
          FROM (SELECT expired.account_id, sum(expired.amount) AS total FROM expired GROUP BY expired.account_id) r
         WHERE a.id = r.account_id;

        -- Does the plan still hold? Wallets first: frozen state, room for the total, and the
        -- exact spendable amount where a refusal depended on it.
        SELECT count(*) INTO v_stale
          FROM unnest(w_account, w_total, w_strict, w_spendable, w_frozen) AS w(account_id, total, strict, spendable, frozen)
          CROSS JOIN LATERAL (SELECT ac.posted - ac.held + ac.overdraft_limit AS spendable, c.status = 'frozen' AS frozen
                                FROM accounts ac JOIN customers c ON c.id = ac.customer_id
                               WHERE ac.id = w.account_id LIMIT 1) now_
         WHERE now_.frozen IS DISTINCT FROM w.frozen
            OR now_.spendable < w.total
            OR (w.strict AND now_.spendable <> w.spendable);

        -- Then grants: each wallet's total filled into its grants as they are now, in
        -- consumption order, must take what the plan took from each.
        IF v_stale = 0 THEN
            WITH fresh AS (
                SELECT s.grant_id, LEAST(s.remaining, w.total - s.before) AS take
                  FROM unnest(w_account, w_total) AS w(account_id, total)
                  CROSS JOIN LATERAL (
                       SELECT g.id AS grant_id, g.remaining, sum(g.remaining) OVER o - g.remaining AS before
                         FROM credit_grants g
                        WHERE g.account_id = w.account_id AND g.remaining > 0
                          AND (g.status || '') IN ('active', 'expired')
                       WINDOW o AS (ORDER BY CASE WHEN g.expires_at IS NOT NULL AND g.expires_at <= p_now THEN 0 ELSE 1 END,
                                             g.priority, g.expires_at NULLS LAST, g.created_at, g.id)
                  ) s
                 WHERE w.total > 0 AND s.before < w.total
            ),
            planned AS (
                SELECT p.grant_id, p.total AS take FROM unnest(g_id, g_total) AS p(grant_id, total)
                 WHERE p.grant_id IS NOT NULL
            )
            SELECT count(*) INTO v_stale
              FROM ((SELECT * FROM fresh EXCEPT ALL SELECT * FROM planned)
                    UNION ALL
                    (SELECT * FROM planned EXCEPT ALL SELECT * FROM fresh)) d;
        END IF;

        IF v_stale > 0 THEN
            RAISE EXCEPTION 'the usage batch''s plan went stale before its wallets were locked'
                  USING ERRCODE = 'serialization_failure';
        END IF;

        UPDATE credit_grants g SET remaining = g.remaining - p.total
          FROM unnest(g_id, g_total) AS p(grant_id, total)
         WHERE g.id = p.grant_id;
        UPDATE accounts a SET posted = a.posted - w.total
          FROM unnest(w_account, w_total) AS w(account_id, total)
         WHERE a.id = w.account_id AND w.total > 0;
    END IF;

    RETURN QUERY SELECT x.i, x.o, x.m, x.t FROM unnest(r_idx, r_outcome, r_amount, r_tx) AS x(i, o, m, t) ORDER BY x.i;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_INGEST_OPTIMISTIC)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_ingest_optimistic(jsonb, timestamptz)")
