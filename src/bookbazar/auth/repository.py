from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.models import User


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def get_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def insert_user(
    session: AsyncSession, *, email: str, name: str, password_hash: str, role: str
) -> User | None:
    """Insert a user; None if the email is taken (no exception, no aborted transaction)."""
    stmt = (
        insert(User)
        .values(id=uuid.uuid4(), email=email, name=name, password_hash=password_hash, role=role)
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User)
    )
    result = await session.execute(stmt)
    return result.scalar_one_or_none()
