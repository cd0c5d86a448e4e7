"""auto-recharge policies and the threshold-trigger outbox

Revision ID: 0010
Revises: 0011
Create Date: 2026-11-27

``auto_recharge_policies``: one per (customer, asset), with the customer's consent.
``recharge_triggers``: the outbox. A database trigger on ``accounts`` writes a row, in the
transaction of the balance change itself, when a wallet's available balance crosses below its
enabled policy's threshold. Every path that moves a balance (``wf_debit``, ``wf_ingest``,
``wf_authorize`` on PostgreSQL, the Python ledger on SQLite) updates ``accounts``, so one
trigger covers them all, and a process that dies right after the commit cannot lose it.

Hot-path cost: ``accounts.recharge_threshold`` holds a copy of the enabled policy's threshold
(NULL without one, kept in step by walletflow.recharge in the policy's own transactions), so the
trigger's WHEN clause decides from the row alone, without calling any function or reading
another table: a debit that crosses nothing pays only for that comparison.

``top_ups`` gains a partial unique index: at most one auto-recharge charge in flight per wallet
(the recharge workflow's id is the charge's ``workflow_id``), enforced by the database.
"""

import sqlalchemy as sa
from alembic import op

import walletflow.db.types

revision = '0010'
down_revision = '0011'
branch_labels = None
depends_on = None

IN_FLIGHT = "status IN ('initiated', 'awaiting_payment', 'scoring', 'in_review') AND workflow_id LIKE 'auto-recharge-%'"

#: Only a crossing (at or above the threshold before, below after) fires; the partial unique
#: index keeps one pending row per wallet, so a burst of debits signals once.
CROSSING = (
    "NEW.recharge_threshold IS NOT NULL AND NEW.posted - NEW.held < NEW.recharge_threshold"
    " AND OLD.posted - OLD.held >= NEW.recharge_threshold"
)

PG_TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION wf_recharge_threshold() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recharge_triggers (customer_id, asset, available, source, created_at)
    VALUES (NEW.customer_id, NEW.asset, NEW.posted - NEW.held, 'threshold', clock_timestamp())
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
"""

PG_TRIGGER = f"""
CREATE TRIGGER accounts_recharge_threshold AFTER UPDATE OF posted, held ON accounts
FOR EACH ROW WHEN ({CROSSING})
EXECUTE FUNCTION wf_recharge_threshold()
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER accounts_recharge_threshold AFTER UPDATE OF posted, held ON accounts
FOR EACH ROW WHEN {CROSSING}
BEGIN
    INSERT OR IGNORE INTO recharge_triggers (customer_id, asset, available, source, created_at)
    VALUES (NEW.customer_id, NEW.asset, NEW.posted - NEW.held, 'threshold',
            strftime('%Y-%m-%d %H:%M:%f', 'now') || '000');
END
"""


def upgrade() -> None:
    op.create_table('auto_recharge_policies',
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('threshold', sa.BigInteger(), nullable=False),
    sa.Column('target', sa.BigInteger(), nullable=False),
    sa.Column('payment_method_id', sa.String(length=255), nullable=False),
    sa.Column('daily_cap', sa.BigInteger(), nullable=False),
    sa.Column('monthly_cap', sa.BigInteger(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=64), nullable=True),
    sa.Column('consent_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consent_method', sa.String(length=64), nullable=False),
    sa.Column('consent_text', sa.Text(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failure_reason', sa.String(length=64), nullable=True),
    sa.Column('last_charge_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('charge_seq', sa.Integer(), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('threshold >= 0', name=op.f('ck_auto_recharge_policies_threshold_non_negative')),
    sa.CheckConstraint('target > threshold', name=op.f('ck_auto_recharge_policies_target_above_threshold')),
    sa.CheckConstraint('daily_cap > 0 AND monthly_cap > 0', name=op.f('ck_auto_recharge_policies_caps_positive')),
    sa.CheckConstraint('consecutive_failures >= 0', name=op.f('ck_auto_recharge_policies_failures_non_negative')),
    sa.ForeignKeyConstraint(['asset'], ['assets.code'], name=op.f('fk_auto_recharge_policies_asset_assets')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_auto_recharge_policies_customer_id_customers')),
    sa.PrimaryKeyConstraint('customer_id', 'asset', name=op.f('pk_auto_recharge_policies'))
    )
    op.create_table('recharge_triggers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('available', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('relayed_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recharge_triggers'))
    )
    op.add_column('accounts', sa.Column('recharge_threshold', sa.BigInteger(), nullable=True))
    op.create_index('uq_recharge_triggers_pending', 'recharge_triggers', ['customer_id', 'asset'], unique=True,
                    postgresql_where=sa.text('relayed_at IS NULL'), sqlite_where=sa.text('relayed_at IS NULL'))
    op.create_index('uq_top_ups_auto_recharge_in_flight', 'top_ups', ['workflow_id'], unique=True,
                    postgresql_where=sa.text(IN_FLIGHT), sqlite_where=sa.text(IN_FLIGHT))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS accounts_recharge_threshold" + (
        " ON accounts" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wf_recharge_threshold()")
    op.drop_index('uq_top_ups_auto_recharge_in_flight', table_name='top_ups')
    op.drop_index('uq_recharge_triggers_pending', table_name='recharge_triggers')
    op.drop_table('recharge_triggers')
    op.drop_table('auto_recharge_policies')
    with op.batch_alter_table('accounts') as batch_op:
        batch_op.drop_column('recharge_threshold')
