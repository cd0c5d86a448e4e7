"""PostgreSQL hot path: a whole batch of priced usage events in one statement

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

``wf_ingest`` takes a batch of already-priced events as one JSON array and, in one statement
(so one transaction: a crash mid-batch leaves nothing behind and a retry redoes it all):

1. creates any missing wallet, then locks every wallet the batch touches in id order, so two
   batches on the same wallets wait for each other instead of deadlocking;
2. per event, in order: a stored (customer, event id) is a duplicate (reported with its original
   amount and transaction); a frozen wallet or a short balance is refused; otherwise the fee is
   spent through ``wf_spend`` and the event and its vendor costs are stored in the same
   transaction as the debit (the event id is never claimed without its debit).

``Usage.ingest`` runs the same rules in Python on SQLite; the test suite holds both to them.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WF_INGEST = r"""
CREATE OR REPLACE FUNCTION wf_ingest(p_events jsonb, p_now timestamptz)
RETURNS TABLE (idx int, outcome text, amount bigint, transaction_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_account record;
    v_existing record;
    v_counter_id uuid;
    v_counter_asset text := NULL;
    v_event_row bigint;
BEGIN
    INSERT INTO accounts (id, customer_id, asset, posted, held, overdraft_limit, tracks_balance, created_at)
    SELECT gen_random_uuid(), c.id, w.asset, 0, 0,
           CASE WHEN c.insufficient_balance = 'overdraft' THEN c.overdraft_limit ELSE 0 END, true, p_now
      FROM (SELECT DISTINCT (e->>'customer_id')::uuid AS customer_id, e->>'asset' AS asset
              FROM jsonb_array_elements(p_events) e) w
      JOIN customers c ON c.id = w.customer_id
    ON CONFLICT DO NOTHING;

    PERFORM 1 FROM accounts a
     WHERE (a.customer_id, a.asset) IN (
            SELECT DISTINCT (e->>'customer_id')::uuid, e->>'asset' FROM jsonb_array_elements(p_events) e)
     ORDER BY a.id
       FOR UPDATE;

    FOR r IN
        SELECT * FROM jsonb_to_recordset(p_events) AS x(
            idx int, customer_id uuid, event_id text, event_type text, occurred_at timestamptz,
            asset text, amount bigint, product_code text, version int, data jsonb, costs jsonb,
            tx_id uuid, key text, hash text, metadata jsonb)
         ORDER BY x.idx
    LOOP
        SELECT u.amount, u.transaction_id INTO v_existing FROM usage_events u
         WHERE u.customer_id = r.customer_id AND u.event_id = r.event_id;
        IF FOUND THEN
            RETURN QUERY SELECT r.idx, 'duplicate'::text, v_existing.amount, v_existing.transaction_id;
            CONTINUE;
        END IF;

        SELECT a.id, a.posted, a.held, a.overdraft_limit, c.status AS customer_status INTO v_account
          FROM accounts a JOIN customers c ON c.id = a.customer_id
         WHERE a.customer_id = r.customer_id AND a.asset = r.asset;
        IF v_account.customer_status = 'frozen' THEN
            RETURN QUERY SELECT r.idx, 'wallet_frozen'::text, r.amount, NULL::uuid;
            CONTINUE;
        END IF;
        IF v_account.posted - v_account.held - r.amount < -v_account.overdraft_limit
           AND wf_release_expired_holds(v_account.id, p_now) > 0 THEN
            SELECT a.id, a.posted, a.held, a.overdraft_limit, v_account.customer_status AS customer_status
              INTO v_account FROM accounts a WHERE a.id = v_account.id;
        END IF;
        IF v_account.posted - v_account.held - r.amount < -v_account.overdraft_limit THEN
            RETURN QUERY SELECT r.idx, 'insufficient_funds'::text, r.amount, NULL::uuid;
            CONTINUE;
        END IF;

        IF r.amount > 0 THEN
            IF v_counter_asset IS DISTINCT FROM r.asset THEN
                SELECT a.id INTO v_counter_id FROM accounts a WHERE a.system_code = 'revenue' AND a.asset = r.asset;
                v_counter_asset := r.asset;
            END IF;
            PERFORM wf_spend(v_account.id, r.asset, r.amount, r.key, r.hash, 'usage', v_counter_id,
                             r.metadata, p_now, r.tx_id);
        END IF;

        INSERT INTO usage_events (customer_id, event_id, event_type, occurred_at, received_at,
                                  product_code, version, asset, amount, transaction_id, data)
        VALUES (r.customer_id, r.event_id, r.event_type, r.occurred_at, p_now, r.product_code, r.version,
                r.asset, r.amount, CASE WHEN r.amount > 0 THEN r.tx_id END, r.data)
        RETURNING id INTO v_event_row;
        IF r.costs IS NOT NULL AND jsonb_array_length(r.costs) > 0 THEN
            INSERT INTO usage_costs (usage_event_id, vendor, asset, amount)
            SELECT v_event_row, c.vendor, c.asset, c.amount
              FROM jsonb_to_recordset(r.costs) AS c(vendor text, asset text, amount bigint);
        END IF;
        RETURN QUERY SELECT r.idx, 'debited'::text, r.amount, CASE WHEN r.amount > 0 THEN r.tx_id END;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_INGEST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_ingest(jsonb, timestamptz)")
