from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bookbazar.auth import repository, service
from bookbazar.auth.deps import COOKIE_NAME, CurrentUser
from bookbazar.auth.ratelimit import LoginLimiter
from bookbazar.auth.schemas import LoginIn, MeOut, RegisterIn, SignedInOut, UserOut
from bookbazar.auth.tokens import issue_token
from bookbazar.config import Settings
from bookbazar.db import SessionDep
from bookbazar.errors import Unauthorized
from bookbazar.kit.responses import Envelope, errors, ok
from bookbazar.models import User
from bookbazar.redis import RedisDep

router = APIRouter(prefix="/auth", tags=["auth"])


def _signed_in(request: Request, user: User, message: str, status: int) -> JSONResponse:
    settings: Settings = request.app.state.settings
    token = issue_token(settings.secret, user.id, user.role, settings.jwt_ttl_seconds)
    response = ok(
        {"user": UserOut.model_validate(user), "accessToken": token}, message, status=status
    )
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=settings.jwt_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=not settings.is_development,
        path="/",
    )
    return response


@router.post(
    "/register",
    status_code=201,
    summary="Create an account and sign in",
    response_model=Envelope[SignedInOut],
    responses=errors(409, 422),
)
async def register(body: RegisterIn, request: Request, session: SessionDep) -> Response:
    user = await service.register(session, email=body.email, password=body.password, name=body.name)
    return _signed_in(request, user, "Registered", 201)


@router.post(
    "/login",
    summary="Sign in (JWT in the body and an HttpOnly cookie)",
    response_model=Envelope[SignedInOut],
    responses=errors(401, 422, 429),
)
async def login(body: LoginIn, request: Request, session: SessionDep, redis: RedisDep) -> Response:
    settings: Settings = request.app.state.settings
    limiter = LoginLimiter(
        redis,
        max_failures=settings.login_max_failures,
        window_seconds=settings.login_window_seconds,
    )
    client_ip = request.client.host if request.client else "unknown"
    user = await service.authenticate(
        session, limiter, email=body.email, password=body.password, client_ip=client_ip
    )
    return _signed_in(request, user, "Signed in", 200)


@router.post(
    "/logout",
    summary="Sign out (clears the cookie)",
    response_model=Envelope[dict[str, Any]],
    responses=errors(),
)
async def logout(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    response = ok({}, "Signed out")
    # Same attributes as when it was set, or some browsers keep the cookie.
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="lax",
        secure=not settings.is_development,
    )
    return response


@router.get(
    "/me",
    summary="The signed-in user",
    response_model=Envelope[MeOut],
    responses=errors(401),
)
async def me(user: CurrentUser, session: SessionDep) -> Response:
    found = await repository.get_by_id(session, user.id)
    if found is None:
        raise Unauthorized("This account no longer exists")
    return ok({"user": UserOut.model_validate(found)})
