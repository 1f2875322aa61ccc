"""book details: page count, year first published, language of the edition, subject

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns whose change bumps the catalog version (0004's, and the new ones).
BEFORE = "title, author, isbn, description, price, currency"
LISTED = BEFORE + ", pages, year, language, subject"


def _listing_trigger(columns: str) -> None:
    op.execute("DROP TRIGGER books_listing_updated ON books")
    op.execute(
        f"CREATE TRIGGER books_listing_updated AFTER UPDATE OF {columns} ON books "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version()"
    )


def upgrade() -> None:
    op.add_column("books", sa.Column("pages", sa.Integer(), nullable=True))
    op.add_column("books", sa.Column("year", sa.SmallInteger(), nullable=True))
    op.add_column("books", sa.Column("language", sa.String(length=40), nullable=True))
    op.add_column("books", sa.Column("subject", sa.String(length=60), nullable=True))
    op.create_check_constraint(op.f("ck_books_pages_positive"), "books", "pages > 0")
    op.create_index(op.f("ix_books_subject"), "books", ["subject"])
    op.create_index(op.f("ix_books_language"), "books", ["language"])
    _listing_trigger(LISTED)


def downgrade() -> None:
    _listing_trigger(BEFORE)
    op.drop_index(op.f("ix_books_language"), table_name="books")
    op.drop_index(op.f("ix_books_subject"), table_name="books")
    op.drop_constraint(op.f("ck_books_pages_positive"), "books", type_="check")
    op.drop_column("books", "subject")
    op.drop_column("books", "language")
    op.drop_column("books", "year")
    op.drop_column("books", "pages")
