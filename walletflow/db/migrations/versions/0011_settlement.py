"""settlement reports, usage reviews and postpaid invoices

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-27

``settlement_reports``: one leakage report per settled period; ``usage_reviews``: wallets frozen
by settlement's usage scoring; ``postpaid_invoices``: one Stripe invoice per postpaid customer,
period and currency (the exactly-once guard). Indexes on ``usage_events`` and ``holds`` for reconciliation and hold events.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import walletflow.db.types

revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settlement_reports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('period_start', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('leak_count', sa.Integer(), nullable=False),
    sa.Column('leak_amount', sa.BigInteger(), nullable=False),
    sa.Column('summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_reports')),
    sa.UniqueConstraint('period', name=op.f('uq_settlement_reports_period'))
    )
    op.create_table('postpaid_invoices',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('stripe_invoice_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finalized_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_postpaid_invoices_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postpaid_invoices')),
    sa.UniqueConstraint('customer_id', 'period', 'currency', name=op.f('uq_postpaid_invoices_customer_period_currency'))
    )
    op.create_table('usage_reviews',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('frozen_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_usage_reviews_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_reviews')),
    sa.UniqueConstraint('customer_id', 'period', name=op.f('uq_usage_reviews_customer_period'))
    )
    op.create_index('ix_usage_events_received_at', 'usage_events', ['received_at'], unique=False)
    op.create_index('ix_usage_events_transaction_id', 'usage_events', ['transaction_id'], unique=False)
    op.create_index('ix_holds_status_resolved_at', 'holds', ['status', 'resolved_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_holds_status_resolved_at', table_name='holds')
    op.drop_index('ix_usage_events_transaction_id', table_name='usage_events')
    op.drop_index('ix_usage_events_received_at', table_name='usage_events')
    op.drop_table('usage_reviews')
    op.drop_table('postpaid_invoices')
    op.drop_table('settlement_reports')
