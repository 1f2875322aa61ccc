"""book details: page count, year first published, language of the edition, subject

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import re
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


def _isbn13(raw: str) -> str | None:
    """ISBNs are kept as ISBN-13 digits from now on (catalog/isbn.py; copied here so this
    migration keeps meaning what it meant): the stored one in that form, or None when it
    is not a valid ISBN (left as it is)."""

    def check13(first12: str) -> str:
        return str(
            (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12)) % 10) % 10
        )

    value = re.sub(r"[\s-]", "", raw)
    if re.fullmatch(r"97[89]\d{10}", value):
        return value if check13(value[:12]) == value[12] else None
    if re.fullmatch(r"\d{9}[\dXx]", value):
        weights = sum((10 - i) * (10 if c in "Xx" else int(c)) for i, c in enumerate(value))
        if weights % 11:
            return None
        return "978" + value[:9] + check13("978" + value[:9])
    return None


def _normalize_isbns() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, isbn FROM books WHERE isbn IS NOT NULL")).all()
    taken = {isbn for _, isbn in rows}
    for book_id, isbn in rows:
        normal = _isbn13(isbn)
        if normal is not None and normal != isbn and normal not in taken:
            bind.execute(
                sa.text("UPDATE books SET isbn = :isbn WHERE id = :id"),
                {"isbn": normal, "id": book_id},
            )
            taken.add(normal)


def upgrade() -> None:
    op.add_column("books", sa.Column("pages", sa.Integer(), nullable=True))
    op.add_column("books", sa.Column("year", sa.SmallInteger(), nullable=True))
    op.add_column("books", sa.Column("language", sa.String(length=40), nullable=True))
    op.add_column("books", sa.Column("subject", sa.String(length=60), nullable=True))
    op.create_check_constraint(op.f("ck_books_pages_positive"), "books", "pages > 0")
    op.create_index(op.f("ix_books_subject"), "books", ["subject"])
    op.create_index(op.f("ix_books_language"), "books", ["language"])
    _listing_trigger(LISTED)
    _normalize_isbns()


def downgrade() -> None:
    _listing_trigger(BEFORE)
    op.drop_index(op.f("ix_books_language"), table_name="books")
    op.drop_index(op.f("ix_books_subject"), table_name="books")
    op.drop_constraint(op.f("ck_books_pages_positive"), "books", type_="check")
    op.drop_column("books", "subject")
    op.drop_column("books", "language")
    op.drop_column("books", "year")
    op.drop_column("books", "pages")
