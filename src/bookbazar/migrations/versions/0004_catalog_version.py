"""catalog version: bumped by a trigger whenever the books' listed facts change

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns a catalog page shows (not `stock`: a sale or a restock leaves pages as they are).
LISTED = "title, author, isbn, description, price, currency"


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalog_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, 1)")
    # A row update (not a sequence): it commits or rolls back with the change, so a page
    # read in a snapshot that misses the change is never cached under its new version.
    op.execute(
        """
        CREATE FUNCTION bump_catalog_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE catalog_version SET version = version + 1 WHERE id = 1;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER books_listed_changed AFTER INSERT OR DELETE OR TRUNCATE ON books "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version()"
    )
    op.execute(
        f"CREATE TRIGGER books_listing_updated AFTER UPDATE OF {LISTED} ON books "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER books_listing_updated ON books")
    op.execute("DROP TRIGGER books_listed_changed ON books")
    op.execute("DROP FUNCTION bump_catalog_version()")
    op.drop_table("catalog_version")
