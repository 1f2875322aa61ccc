"""fenced stock holds, ordered outbox, an email outbox, restocks, stock audits

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Orders name the stock hold they own; existing orders own token "0" (their holds are
    # recreated under it by `bookbazar reconcile`, which `up` runs at every start).
    op.add_column(
        "orders",
        sa.Column("hold_token", sa.String(length=32), server_default="0", nullable=False),
    )
    op.add_column("orders", sa.Column("cart_version", sa.BigInteger(), nullable=True))
    op.add_column("payments", sa.Column("review_reason", sa.String(length=500), nullable=True))

    op.add_column(
        "outbox_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
    )
    op.create_index(
        "ix_outbox_order_unsent",
        "outbox_events",
        ["order_id", "seq"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )

    # Emails become a transactional outbox of their own: a row per owed email, written
    # with its event, claimed under a lease by the notifier, marked sent after the send.
    op.rename_table("sent_notifications", "notifications")
    op.execute(
        "ALTER TABLE notifications RENAME CONSTRAINT pk_sent_notifications TO pk_notifications"
    )
    op.add_column("notifications", sa.Column("user_id", sa.Uuid(), nullable=True))
    op.add_column(
        "notifications",
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "notifications", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "notifications",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "notifications",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column("notifications", sa.Column("last_error", sa.Text(), nullable=True))
    op.alter_column("notifications", "recipient", nullable=True)
    op.alter_column("notifications", "sent_at", nullable=True, server_default=None)
    op.execute("UPDATE notifications SET created_at = sent_at, claimed_at = sent_at")
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )

    op.create_table(
        "restocks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("admin_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_restocks_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["book_id"], ["books.id"], name=op.f("fk_restocks_book_id_books"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["users.id"],
            name=op.f("fk_restocks_admin_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restocks")),
        sa.UniqueConstraint("admin_id", "idempotency_key", name="uq_restocks_admin_key"),
    )
    op.create_index(op.f("ix_restocks_book_id"), "restocks", ["book_id"], unique=False)

    op.create_table(
        "stock_audits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "finished_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("books_checked", sa.Integer(), nullable=False),
        sa.Column("holds_checked", sa.Integer(), nullable=False),
        sa.Column("drift_units", sa.Integer(), nullable=False),
        sa.Column("corrections", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_audits")),
    )


def downgrade() -> None:
    op.drop_table("stock_audits")
    op.drop_index(op.f("ix_restocks_book_id"), table_name="restocks")
    op.drop_table("restocks")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.execute("DELETE FROM notifications WHERE sent_at IS NULL")
    op.execute("UPDATE notifications SET recipient = '' WHERE recipient IS NULL")
    op.alter_column("notifications", "recipient", nullable=False)
    op.alter_column("notifications", "sent_at", nullable=False, server_default=sa.text("now()"))
    for column in ("last_error", "next_attempt_at", "attempts", "claimed_at", "created_at"):
        op.drop_column("notifications", column)
    op.drop_column("notifications", "user_id")
    op.execute(
        "ALTER TABLE notifications RENAME CONSTRAINT pk_notifications TO pk_sent_notifications"
    )
    op.rename_table("notifications", "sent_notifications")
    op.drop_index("ix_outbox_order_unsent", table_name="outbox_events")
    op.drop_column("outbox_events", "seq")
    op.drop_column("payments", "review_reason")
    op.drop_column("orders", "cart_version")
    op.drop_column("orders", "hold_token")
