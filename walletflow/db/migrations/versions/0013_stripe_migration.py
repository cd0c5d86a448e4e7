"""Stripe-to-wallet migration: runs, per-customer items, customer, price and cut-over links.

Revision ID: 0013
Revises: 0008
Create Date: 2026-11-27 17:31:16.508144
"""

from alembic import op
import sqlalchemy as sa
import walletflow.db.types
from sqlalchemy.dialects import postgresql

revision = '0013'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stripe_migrations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('enable_auto_recharge', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cursor', sa.String(length=255), nullable=True),
    sa.Column('pages_done', sa.Integer(), nullable=False),
    sa.Column('customers_done', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('cutover_status', sa.String(length=16), nullable=True),
    sa.Column('cutover_report', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.String(length=2000), nullable=True),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_migrations'))
    )
    op.create_table('stripe_customer_links',
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('default_payment_method', sa.String(length=255), nullable=True),
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_stripe_customer_links_customer_id_customers')),
    sa.ForeignKeyConstraint(['migration_id'], ['stripe_migrations.id'], name=op.f('fk_stripe_customer_links_migration_id_stripe_migrations')),
    sa.PrimaryKeyConstraint('stripe_customer_id', name=op.f('pk_stripe_customer_links')),
    sa.UniqueConstraint('customer_id', name=op.f('uq_stripe_customer_links_customer_id'))
    )
    op.create_table('stripe_cutovers',
    sa.Column('stripe_subscription_id', sa.String(length=255), nullable=False),
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=False),
    sa.Column('invoice_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['stripe_migrations.id'], name=op.f('fk_stripe_cutovers_migration_id_stripe_migrations')),
    sa.PrimaryKeyConstraint('stripe_subscription_id', name=op.f('pk_stripe_cutovers'))
    )
    op.create_table('stripe_migration_items',
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=255), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['stripe_migrations.id'], name=op.f('fk_stripe_migration_items_migration_id_stripe_migrations')),
    sa.PrimaryKeyConstraint('migration_id', 'stripe_customer_id', name=op.f('pk_stripe_migration_items'))
    )
    op.create_table('stripe_price_links',
    sa.Column('stripe_price_id', sa.String(length=255), nullable=False),
    sa.Column('product_code', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', walletflow.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['stripe_migrations.id'], name=op.f('fk_stripe_price_links_migration_id_stripe_migrations')),
    sa.ForeignKeyConstraint(['product_code'], ['products.code'], name=op.f('fk_stripe_price_links_product_code_products')),
    sa.PrimaryKeyConstraint('stripe_price_id', name=op.f('pk_stripe_price_links'))
    )


def downgrade() -> None:
    op.drop_table('stripe_price_links')
    op.drop_table('stripe_migration_items')
    op.drop_table('stripe_cutovers')
    op.drop_table('stripe_customer_links')
    op.drop_table('stripe_migrations')
