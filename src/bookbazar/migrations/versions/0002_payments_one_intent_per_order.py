"""one payment intent per order and provider

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_unique_constraint("uq_payments_order_provider", "payments", ["order_id", "provider"])


def downgrade() -> None:
    op.drop_constraint("uq_payments_order_provider", "payments", type_="unique")
