"""balance alerts: a trigger records every wallet that reaches zero (balance.depleted)

Revision ID: 0015
Revises: 0010
Create Date: 2026-11-27

The trigger fires on every debit path (``wf_debit``, ``wf_ingest``, ``wf_authorize`` and the
Python ledger) because each of them updates ``accounts``. Its ``WHEN`` clause is evaluated
without calling anything, so a debit that does not cross zero pays next to nothing.
"""

import sqlalchemy as sa
from alembic import op

import walletflow.db.types

revision = '0015'
down_revision = '0010'
branch_labels = None
depends_on = None

#: Customer wallets only, and only the crossing: above zero before, zero or below after.
CROSSING = "NEW.customer_id IS NOT NULL AND OLD.posted - OLD.held > 0 AND NEW.posted - NEW.held <= 0"

PG_TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION wf_balance_depleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balance_alerts (customer_id, asset, kind, available, created_at)
    VALUES (NEW.customer_id, NEW.asset, 'depleted', NEW.posted - NEW.held, clock_timestamp());
    RETURN NULL;
END $$;
"""

PG_TRIGGER = f"""
CREATE TRIGGER accounts_balance_depleted AFTER UPDATE OF posted, held ON accounts
FOR EACH ROW WHEN ({CROSSING})
EXECUTE FUNCTION wf_balance_depleted()
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER accounts_balance_depleted AFTER UPDATE OF posted, held ON accounts
FOR EACH ROW WHEN {CROSSING}
BEGIN
    INSERT INTO balance_alerts (customer_id, asset, kind, available, created_at)
    VALUES (NEW.customer_id, NEW.asset, 'depleted', NEW.posted - NEW.held,
            strftime('%Y-%m-%d %H:%M:%f', 'now') || '000');
END
"""


def upgrade() -> None:
    op.create_table('balance_alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('available', sa.BigInteger(), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('promoted_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_balance_alerts'))
    )
    op.create_index('ix_balance_alerts_pending', 'balance_alerts', ['id'], unique=False,
                    postgresql_where=sa.text('promoted_at IS NULL'), sqlite_where=sa.text('promoted_at IS NULL'))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER IF EXISTS accounts_balance_depleted" + (" ON accounts" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS wf_balance_depleted()")
    op.drop_index('ix_balance_alerts_pending', table_name='balance_alerts')
    op.drop_table('balance_alerts')
