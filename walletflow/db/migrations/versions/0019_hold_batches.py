"""hold batches: ``wf_authorize_many`` places many holds in one statement and one commit

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28

The authorization twin of 0018's ``wf_debit_many``, for the same group writer
(:mod:`walletflow.ledger.batching`): under 32 concurrent authorizations each one paid a round
trip, a function call and a commit of its own, about 0.4 ms of PostgreSQL CPU apiece
(bench.ingest), with the API server wanting the same two cores.

The rules are ``wf_authorize``'s (0005), applied to each hold in turn in the order the caller
gave them, per wallet: wallets locked first in account id order (0018's ``wf_lock_wallets``);
keys looked up in one query (a concurrent request with the same key that commits after it makes the
hold insert fail on the unique key: the statement is rolled back and the caller runs each hold
alone); a frozen wallet or a short balance (after releasing the wallet's expired holds, once)
refused per hold; the holds inserted and each wallet's ``held`` raised once at the end. Each
hold carries its own ``created_at`` (the caller's "now", which its answer already shows).
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

WF_AUTHORIZE_MANY = r"""
CREATE OR REPLACE FUNCTION wf_authorize_many(p_holds jsonb, p_now timestamptz)
RETURNS TABLE (idx int, outcome text, hold_id uuid, account_id uuid, available bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan  -- as wf_debit_many: plan each statement once
AS $$
DECLARE
    h record;
    v_customer uuid;
    v_asset text;
    v_account_id uuid;
    v_posted bigint;
    v_held bigint;
    v_limit bigint;
    v_frozen boolean;
    v_released boolean;
    r record;
    n_id uuid[] := '{}';
    n_account uuid[] := '{}';
    n_amount bigint[] := '{}';
    n_key text[] := '{}';
    n_hash text[] := '{}';
    n_expires timestamptz[] := '{}';
    n_meta jsonb[] := '{}';
    n_created timestamptz[] := '{}';
    a_id uuid[] := '{}';
    a_added bigint[] := '{}';
BEGIN
    PERFORM wf_lock_wallets(p_holds);  -- in account id order (0018)
    FOR h IN
        -- LATERAL ... LIMIT 1: one probe of the unique index per key (see 0018).
        SELECT x.*, e.id AS existing_id, e.account_id AS existing_account, e.request_hash AS existing_hash
          FROM jsonb_to_recordset(p_holds) AS x(
               idx int, customer_id uuid, asset text, amount bigint, key text, hash text,
               expires_at timestamptz, metadata jsonb, created_at timestamptz, hold_id uuid)
          LEFT JOIN LATERAL (SELECT eh.id, eh.account_id, eh.request_hash FROM holds eh
                              WHERE eh.idempotency_key = x.key LIMIT 1) e ON true
         ORDER BY x.customer_id, x.asset, x.idx
    LOOP
        idx := h.idx;
        hold_id := NULL;
        account_id := NULL;
        available := NULL;

        IF v_customer IS DISTINCT FROM h.customer_id OR v_asset IS DISTINCT FROM h.asset THEN
            v_customer := h.customer_id;
            v_asset := h.asset;
            v_released := false;
            SELECT a.id, a.posted, a.held, a.overdraft_limit, c.status = 'frozen'
              INTO v_account_id, v_posted, v_held, v_limit, v_frozen
              FROM accounts a JOIN customers c ON c.id = a.customer_id
             WHERE a.customer_id = h.customer_id AND a.asset = h.asset
               FOR UPDATE OF a;  -- locked already, unless created since
        END IF;

        IF v_account_id IS NULL THEN
            outcome := 'no_account';
        ELSIF h.existing_id IS NOT NULL THEN
            IF h.existing_hash <> h.hash THEN
                outcome := 'conflict';
            ELSE
                outcome := 'replayed';
                hold_id := h.existing_id;
                account_id := h.existing_account;
            END IF;
        ELSIF v_frozen THEN
            outcome := 'frozen';
        ELSE
            IF v_posted - v_held - h.amount < -v_limit AND NOT v_released THEN
                v_released := true;
                v_held := v_held - wf_release_expired_holds(v_account_id, p_now);
            END IF;
            IF v_posted - v_held - h.amount < -v_limit THEN
                outcome := 'insufficient_funds';
                available := v_posted - v_held;
            ELSE
                n_id := n_id || h.hold_id; n_account := n_account || v_account_id;
                n_amount := n_amount || h.amount; n_key := n_key || h.key; n_hash := n_hash || h.hash;
                n_expires := n_expires || h.expires_at; n_meta := n_meta || COALESCE(h.metadata, '{}'::jsonb);
                n_created := n_created || h.created_at;
                v_held := v_held + h.amount;
                a_id := a_id || v_account_id;
                a_added := a_added || h.amount;
                outcome := 'ok';
                hold_id := h.hold_id;
                account_id := v_account_id;
                available := v_posted - v_held;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF cardinality(n_id) > 0 THEN
        INSERT INTO holds (id, account_id, amount, status, idempotency_key, request_hash, expires_at, metadata, created_at)
        SELECT u.id, u.account, u.amount, 'pending', u.key, u.hash, u.expires, u.meta, u.created
          FROM unnest(n_id, n_account, n_amount, n_key, n_hash, n_expires, n_meta, n_created)
               AS u(id, account, amount, key, hash, expires, meta, created);
        FOR r IN SELECT u.id, sum(u.added)::bigint AS total FROM unnest(a_id, a_added) AS u(id, added) GROUP BY u.id LOOP
            UPDATE accounts a SET held = a.held + r.total WHERE a.id = r.id;  -- per primary key (see 0018)
        END LOOP;
    END IF;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WF_AUTHORIZE_MANY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_authorize_many(jsonb, timestamptz)")
