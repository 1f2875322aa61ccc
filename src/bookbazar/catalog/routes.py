from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from bookbazar.auth.deps import AdminUser
from bookbazar.catalog import service
from bookbazar.catalog.pages import Filters
from bookbazar.catalog.schemas import AdminBookOut, BookIn, BookOut, FacetsOut, RestockIn
from bookbazar.db import SessionDep
from bookbazar.kit.idempotency import HEADER, validate_key
from bookbazar.kit.pagination import PageDep
from bookbazar.kit.responses import Envelope, Page, errors, ok
from bookbazar.services import ServicesDep

router = APIRouter(prefix="/books", tags=["catalog"])
admin_router = APIRouter(prefix="/admin/books", tags=["admin"])


@router.get(
    "",
    summary="Search the catalog",
    response_model=Envelope[Page[BookOut]],
    responses=errors(422),
)
async def list_books(
    services: ServicesDep,
    page: PageDep,
    q: Annotated[
        str | None, Query(max_length=200, description="title or author (part of), or an ISBN")
    ] = None,
    sort: Annotated[
        Literal["title", "price", "price_desc", "newest"],
        Query(description="title (A-Z), price (low first), price_desc, newest (added last first)"),
    ] = "title",
    subject: Annotated[
        str | None, Query(max_length=60, description="only this subject (exact)")
    ] = None,
    language: Annotated[
        str | None, Query(max_length=40, description="only editions in this language (exact)")
    ] = None,
) -> Response:
    filters = Filters(subject=subject or None, language=language or None)
    return ok(await service.list_books(services, q, page, sort, filters))


@router.get(
    "/facets",
    summary="The subjects and languages the catalog can be filtered by, with book counts",
    response_model=Envelope[FacetsOut],
    responses=errors(),
)
async def facets(services: ServicesDep) -> Response:
    return ok(await service.facets(services))


@router.get(
    "/{book_id}", summary="One book", response_model=Envelope[BookOut], responses=errors(404, 422)
)
async def get_book(book_id: uuid.UUID, services: ServicesDep, session: SessionDep) -> Response:
    return ok(await service.get_book(session, services.inventory, book_id))


@admin_router.post(
    "",
    status_code=201,
    summary="Add a book (admin)",
    response_model=Envelope[AdminBookOut],
    responses=errors(401, 403, 409, 422),
)
async def create_book(body: BookIn, _: AdminUser, session: SessionDep) -> Response:
    return ok(await service.create_book(session, body), "Book created", status=201)


@admin_router.post(
    "/{book_id}/restock",
    summary="Add units on hand (admin)",
    response_model=Envelope[AdminBookOut],
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def restock(
    book_id: uuid.UUID,
    body: RestockIn,
    admin: AdminUser,
    services: ServicesDep,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="optional: a retry with the same key adds nothing twice",
            max_length=255,
        ),
    ] = None,
) -> Response:
    key = validate_key(idempotency_key) if idempotency_key is not None else None
    done = await service.restock(services, session, admin.id, book_id, body.quantity, key)
    message = (
        "Restocked"
        if done.counter_updated
        else ("Restocked; availability will catch up within a minute")
    )
    headers = {"Idempotent-Replayed": "true"} if done.replayed else None
    return ok(done.book, message, headers=headers)
