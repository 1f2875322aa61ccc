"""The demo catalog and demo accounts loaded by `bookbazar seed` (idempotent)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.auth import repository as users
from bookbazar.auth import service as auth
from bookbazar.auth.tokens import hash_password, verify_password
from bookbazar.catalog import repository
from bookbazar.catalog.demo_data import DEMO_DETAILS
from bookbazar.catalog.isbn import isbn13_check_digit
from bookbazar.models import Book, Role

log = structlog.get_logger(__name__)

# (title, author, price in rupees, stock)
DEMO_BOOKS: list[tuple[str, str, int, int]] = [
    ("Godaan", "Munshi Premchand", 299, 40),
    ("Gitanjali", "Rabindranath Tagore", 199, 35),
    ("The Home and the World", "Rabindranath Tagore", 349, 20),
    ("Malgudi Days", "R. K. Narayan", 299, 50),
    ("The Guide", "R. K. Narayan", 325, 30),
    ("Swami and Friends", "R. K. Narayan", 250, 25),
    ("Untouchable", "Mulk Raj Anand", 275, 15),
    ("Kanthapura", "Raja Rao", 280, 12),
    ("Train to Pakistan", "Khushwant Singh", 299, 45),
    ("Midnight's Children", "Salman Rushdie", 599, 30),
    ("The God of Small Things", "Arundhati Roy", 499, 40),
    ("A Suitable Boy", "Vikram Seth", 899, 18),
    ("The White Tiger", "Aravind Adiga", 399, 35),
    ("The Inheritance of Loss", "Kiran Desai", 450, 20),
    ("The Namesake", "Jhumpa Lahiri", 399, 28),
    ("Interpreter of Maladies", "Jhumpa Lahiri", 350, 26),
    ("Sea of Poppies", "Amitav Ghosh", 499, 22),
    ("The Shadow Lines", "Amitav Ghosh", 375, 17),
    ("A Fine Balance", "Rohinton Mistry", 650, 21),
    ("Such a Long Journey", "Rohinton Mistry", 425, 9),
    ("The Palace of Illusions", "Chitra Banerjee Divakaruni", 399, 33),
    ("Chemmeen", "Thakazhi Sivasankara Pillai", 250, 11),
    ("Samskara", "U. R. Ananthamurthy", 225, 8),
    ("Tamas", "Bhisham Sahni", 299, 14),
    ("Raag Darbari", "Shrilal Shukla", 350, 16),
    ("Pather Panchali", "Bibhutibhushan Bandyopadhyay", 275, 13),
    ("Devdas", "Sarat Chandra Chattopadhyay", 199, 24),
    ("The Discovery of India", "Jawaharlal Nehru", 499, 19),
    ("Wings of Fire", "A. P. J. Abdul Kalam", 350, 60),
    ("The Story of My Experiments with Truth", "M. K. Gandhi", 199, 55),
    ("Pride and Prejudice", "Jane Austen", 199, 48),
    ("Emma", "Jane Austen", 225, 20),
    ("Jane Eyre", "Charlotte Bronte", 249, 27),
    ("Wuthering Heights", "Emily Bronte", 225, 23),
    ("Great Expectations", "Charles Dickens", 299, 31),
    ("A Tale of Two Cities", "Charles Dickens", 275, 29),
    ("Middlemarch", "George Eliot", 399, 10),
    ("Moby-Dick", "Herman Melville", 399, 12),
    ("The Adventures of Huckleberry Finn", "Mark Twain", 250, 26),
    ("Anna Karenina", "Leo Tolstoy", 499, 15),
    ("War and Peace", "Leo Tolstoy", 799, 10),
    ("Crime and Punishment", "Fyodor Dostoevsky", 399, 22),
    ("The Brothers Karamazov", "Fyodor Dostoevsky", 599, 14),
    ("Madame Bovary", "Gustave Flaubert", 299, 11),
    ("Les Miserables", "Victor Hugo", 699, 9),
    ("Don Quixote", "Miguel de Cervantes", 599, 8),
    ("The Count of Monte Cristo", "Alexandre Dumas", 549, 16),
    ("Frankenstein", "Mary Shelley", 199, 34),
    ("Dracula", "Bram Stoker", 225, 30),
    ("The Picture of Dorian Gray", "Oscar Wilde", 199, 37),
    ("Heart of Darkness", "Joseph Conrad", 175, 21),
    ("Ulysses", "James Joyce", 499, 7),
    ("Mrs Dalloway", "Virginia Woolf", 275, 13),
    ("The Great Gatsby", "F. Scott Fitzgerald", 225, 42),
    ("The Metamorphosis", "Franz Kafka", 150, 39),
    ("One Thousand and One Nights", "Anonymous", 450, 12),
    ("Things Fall Apart", "Chinua Achebe", 299, 25),
    ("The Old Man and the Sea", "Ernest Hemingway", 199, 33),
    ("Siddhartha", "Hermann Hesse", 199, 44),
    ("The Little Prince", "Antoine de Saint-Exupery", 175, 1),
]


def demo_isbn(n: int) -> str:
    """A made-up, well-formed ISBN-13 for the n-th demo book (running numbers after
    979-8, with a valid check digit)."""
    first12 = f"9798{n:08d}"
    return first12 + isbn13_check_digit(first12)


def demo_book_rows() -> list[dict[str, Any]]:
    rows = []
    for n, (title, author, rupees, stock) in enumerate(DEMO_BOOKS, start=1):
        year, pages, language, subject, description = DEMO_DETAILS[title]
        rows.append(
            {
                "title": title,
                "author": author,
                "price": rupees * 100,
                "currency": "INR",
                "stock": stock,
                "isbn": demo_isbn(n),
                "description": description,
                "pages": pages,
                "year": year,
                "language": language,
                "subject": subject,
            }
        )
    return rows


# What an older seed left out; filled in on a demo book that has none of it.
_DETAILS = ("isbn", "description", "pages", "year", "language", "subject")


async def seed_catalog(session: AsyncSession) -> int:
    """Insert the demo books that are not there yet (matched by title and author), and
    give the details to demo books an older seed inserted without them."""
    books = (await session.execute(select(Book))).scalars().all()
    existing = {(b.title, b.author): b for b in books}
    added = 0
    for row in demo_book_rows():
        book = existing.get((row["title"], row["author"]))
        if book is None:
            if await repository.insert_book(session, row) is not None:
                added += 1
        elif all(getattr(book, name) is None for name in _DETAILS):
            for name in _DETAILS:
                setattr(book, name, row[name])
    return added


# RFC 2606 reserved names: valid for sign-in, never delivered anywhere. (Not `.local`:
# email validation refuses special-use domains, so such accounts could never log in.)
DEMO_EMAILS = {"admin": "admin@bookbazar.example", "customer": "reader@bookbazar.example"}


def demo_credentials(credentials_file: Path) -> dict[str, dict[str, str]]:
    """The demo accounts' credentials. Passwords are random, made once and kept in
    `credentials_file` (readable only by its owner) so every run prints the same ones."""
    stored: dict[str, Any] = {}
    if credentials_file.exists():
        try:
            loaded = json.loads(credentials_file.read_text())
            stored = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            log.warning("demo_credentials_unreadable", path=str(credentials_file))
    creds: dict[str, dict[str, str]] = {}
    for role, email in DEMO_EMAILS.items():
        entry = stored.get(role)
        password = entry.get("password") if isinstance(entry, dict) else None
        if not isinstance(password, str) or len(password) < 8:
            password = secrets.token_urlsafe(12)
        creds[role] = {"email": email, "password": password}
    if creds != stored:
        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        credentials_file.touch(mode=0o600)
        credentials_file.chmod(0o600)
        credentials_file.write_text(json.dumps(creds, indent=2))
    return creds


async def seed_accounts(session: AsyncSession, creds: dict[str, dict[str, str]]) -> None:
    """Create the demo admin and customer if missing; an existing one gets the password
    from `creds` again, so the printed credentials always work."""
    for role, name in ((Role.ADMIN, "Demo Admin"), (Role.CUSTOMER, "Demo Reader")):
        entry = creds[role.value]
        user = await users.get_by_email(session, entry["email"])
        if user is None:
            await auth.register(
                session, email=entry["email"], password=entry["password"], name=name, role=role
            )
        elif not verify_password(entry["password"], user.password_hash):
            user.password_hash = hash_password(entry["password"])


async def count_books(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Book))).scalar_one())
