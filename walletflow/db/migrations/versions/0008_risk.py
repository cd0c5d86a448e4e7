"""risk features and card fingerprint on top-ups

Revision ID: 0008
Revises: 0015
Create Date: 2026-11-27

``top_ups.risk_features``: the feature values, explanations and model version behind a risk
decision (the review queue shows them; ``walletflow risk train --from-db`` learns from them).
``top_ups.card_fingerprint``: Stripe's card fingerprint of the paying card, indexed so the scorer
can count the other customers one card paid for.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    op.add_column('top_ups', sa.Column('risk_features', json_type, nullable=True))
    op.add_column('top_ups', sa.Column('card_fingerprint', sa.String(length=64), nullable=True))
    op.create_index('ix_top_ups_card_fingerprint', 'top_ups', ['card_fingerprint'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_top_ups_card_fingerprint', table_name='top_ups')
    with op.batch_alter_table('top_ups', schema=None) as batch_op:
        batch_op.drop_column('card_fingerprint')
        batch_op.drop_column('risk_features')
