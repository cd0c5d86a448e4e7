"""PostgreSQL hot path: the usage debit as one server-side function

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

``wf_spend`` posts a spend from a locked account (shared with the batch usage path);
``wf_debit`` is the single debit. A debit on the Python path costs about ten round trips while the wallet row is locked; on one
hot wallet that lock time *is* the throughput. ``wf_debit`` does the same work (lock, idempotency
check, grant draws, entries, balance) in one call, so the lock is held only while the server
works. It mirrors ``Ledger.debit``'s Python path, which SQLite uses; the whole test suite runs
on both, so the two are held to the same behaviour.

Statements inside a VOLATILE plpgsql function each take a fresh snapshot at READ COMMITTED, so
the grants read after ``FOR UPDATE`` on the account include every committed concurrent credit.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WF_SPEND = r"""
-- Post a spend from an account the caller has locked: draw grants in consumption order
-- (past expiry first, then priority, soonest expiry, oldest), write the transaction and its
-- entries, move the balance. Returns the draws as [[grant_id or null, amount], ...].
CREATE OR REPLACE FUNCTION wf_spend(
    p_account_id uuid,
    p_asset text,
    p_amount bigint,
    p_key text,
    p_hash text,
    p_kind text,
    p_counter_id uuid,
    p_metadata jsonb,
    p_now timestamptz,
    p_tx_id uuid
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint := p_amount;
    v_take bigint;
    v_draws jsonb := '[]'::jsonb;
    g record;
BEGIN
    INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, metadata, created_at)
    VALUES (p_tx_id, p_kind, p_key, p_hash, p_metadata, p_now);
    FOR g IN
        SELECT cg.id, cg.remaining FROM credit_grants cg
         WHERE cg.account_id = p_account_id AND cg.remaining > 0 AND cg.status IN ('active', 'expired')
         ORDER BY CASE WHEN cg.expires_at IS NOT NULL AND cg.expires_at <= p_now THEN 0 ELSE 1 END,
                  cg.priority, cg.expires_at NULLS LAST, cg.created_at, cg.id
    LOOP
        EXIT WHEN v_left = 0;
        v_take := LEAST(v_left, g.remaining);
        UPDATE credit_grants SET remaining = remaining - v_take WHERE id = g.id;
        INSERT INTO ledger_entries (transaction_id, account_id, asset, amount, grant_id, created_at)
        VALUES (p_tx_id, p_account_id, p_asset, -v_take, g.id, p_now);
        v_draws := v_draws || jsonb_build_array(jsonb_build_array(g.id, v_take));
        v_left := v_left - v_take;
    END LOOP;
    IF v_left > 0 THEN  -- what the grants cannot cover comes from the overdraft
        INSERT INTO ledger_entries (transaction_id, account_id, asset, amount, grant_id, created_at)
        VALUES (p_tx_id, p_account_id, p_asset, -v_left, NULL, p_now);
        v_draws := v_draws || jsonb_build_array(jsonb_build_array(NULL, v_left));
    END IF;
    INSERT INTO ledger_entries (transaction_id, account_id, asset, amount, grant_id, created_at)
    VALUES (p_tx_id, p_counter_id, p_asset, p_amount, NULL, p_now);
    UPDATE accounts SET posted = posted - p_amount WHERE id = p_account_id;
    RETURN v_draws;
END $$;
"""

WF_RELEASE_EXPIRED_HOLDS = r"""
-- Expire a locked account's pending holds past expiry and release what they held; returns the
-- amount released. Called only when a balance check fails (Python twin: ensure_spendable_now).
CREATE OR REPLACE FUNCTION wf_release_expired_holds(p_account_id uuid, p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_released bigint;
BEGIN
    WITH expired AS (
        UPDATE holds SET status = 'expired', resolved_at = p_now
         WHERE account_id = p_account_id AND status = 'pending' AND expires_at <= p_now
        RETURNING amount
    )
    SELECT COALESCE(sum(amount), 0) INTO v_released FROM expired;
    IF v_released > 0 THEN
        UPDATE accounts SET held = held - v_released WHERE id = p_account_id;
    END IF;
    RETURN v_released;
END $$;
"""

WF_DEBIT = r"""
CREATE OR REPLACE FUNCTION wf_debit(
    p_customer_id uuid,
    p_asset text,
    p_amount bigint,
    p_key text,
    p_hash text,
    p_kind text,
    p_counter text,
    p_metadata jsonb,
    p_now timestamptz,
    p_tx_id uuid
) RETURNS TABLE (outcome text, transaction_id uuid, draws jsonb, available bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_account accounts%ROWTYPE;
    v_customer_status text;
    v_counter_id uuid;
    v_existing ledger_transactions%ROWTYPE;
BEGIN
    SELECT a.* INTO v_account FROM accounts a
     WHERE a.customer_id = p_customer_id AND a.asset = p_asset
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_account'::text, NULL::uuid, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;

    -- Idempotency is checked under the wallet lock: a concurrent retry has committed by now.
    SELECT t.* INTO v_existing FROM ledger_transactions t WHERE t.idempotency_key = p_key;
    IF FOUND THEN
        IF v_existing.request_hash <> p_hash THEN
            RETURN QUERY SELECT 'conflict'::text, NULL::uuid, NULL::jsonb, NULL::bigint;
            RETURN;
        END IF;
        RETURN QUERY
        SELECT 'replayed'::text, v_existing.id,
               COALESCE(jsonb_agg(jsonb_build_array(e.grant_id, -e.amount) ORDER BY e.id), '[]'::jsonb),
               NULL::bigint
          FROM ledger_entries e
         WHERE e.transaction_id = v_existing.id AND e.amount < 0;
        RETURN;
    END IF;

    -- A credit still scheduled holds its key on the grant alone until it is posted.
    IF EXISTS (SELECT 1 FROM credit_grants g WHERE g.idempotency_key = p_key) THEN
        RETURN QUERY SELECT 'conflict'::text, NULL::uuid, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;

    SELECT c.status INTO v_customer_status FROM customers c WHERE c.id = p_customer_id;
    IF v_customer_status = 'frozen' THEN
        RETURN QUERY SELECT 'frozen'::text, NULL::uuid, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;
    IF v_account.posted - v_account.held - p_amount < -v_account.overdraft_limit
       AND wf_release_expired_holds(v_account.id, p_now) > 0 THEN
        SELECT a.* INTO v_account FROM accounts a WHERE a.id = v_account.id;
    END IF;
    IF v_account.posted - v_account.held - p_amount < -v_account.overdraft_limit THEN
        RETURN QUERY SELECT 'insufficient_funds'::text, NULL::uuid, NULL::jsonb,
                            v_account.posted - v_account.held;
        RETURN;
    END IF;

    SELECT a.id INTO v_counter_id FROM accounts a WHERE a.system_code = p_counter AND a.asset = p_asset;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_counter'::text, NULL::uuid, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;

    RETURN QUERY SELECT 'ok'::text, p_tx_id,
        wf_spend(v_account.id, p_asset, p_amount, p_key, p_hash, p_kind, v_counter_id, p_metadata, p_now, p_tx_id),
        v_account.posted - v_account.held - p_amount;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_SPEND)
        op.execute(WF_RELEASE_EXPIRED_HOLDS)
        op.execute(WF_DEBIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_debit(uuid, text, bigint, text, text, text, text, jsonb, timestamptz, uuid)")
        op.execute("DROP FUNCTION IF EXISTS wf_release_expired_holds(uuid, timestamptz)")
        op.execute("DROP FUNCTION IF EXISTS wf_spend(uuid, text, bigint, text, text, text, uuid, jsonb, timestamptz, uuid)")
