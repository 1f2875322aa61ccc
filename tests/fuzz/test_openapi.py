"""Schemathesis against the app's own OpenAPI spec, in process (ASGI, lifespan started):
valid and invalid requests to every operation, signed in as a customer (an admin for the
admin routes). No 5xx, responses conform to the documented schemas and media types,
invalid input is refused with a 4xx, and every error is the error envelope (DESIGN.md §3).

Bounded for `make test` (FUZZ_EXAMPLES examples per operation and mode, 15 by default);
run longer with e.g. `FUZZ_EXAMPLES=300 pytest tests/fuzz`."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from bookbazar.app import openapi_document
from tests.fuzz.harness import APP, EXAMPLES, REPRODUCIBLE, FuzzData

# FastAPI documents JSON for every route; these answer in another media type on purpose.
NOT_JSON = {"/metrics"}

schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = APP
schema.location = "/openapi.json"
schema.config.generation.update(
    modes=["positive", "negative"],
    max_examples=EXAMPLES,
    deterministic=REPRODUCIBLE,
    with_security_parameters=False,  # the test signs every request itself
)


def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is the error envelope, with a message that says what is wrong."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {response.text[:200]}"
    assert body.get("success") is False, body
    assert body.get("statusCode") == response.status_code, body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    assert isinstance(body.get("errors"), list), body
    return None


def _aimed_at_real_objects(case: Any, data: FuzzData) -> bool:
    """Point the case's ids at objects that exist (random ids mostly reach 404s)."""
    path = dict(case.path_parameters or {})
    body = case.body
    changed = False
    if "order_id" in path:
        path["order_id"], changed = data.orders[0], True
    if "book_id" in path:
        path["book_id"], changed = data.books[0], True
    if isinstance(body, dict):
        body = dict(body)
        if "orderId" in body:
            body["orderId"], changed = data.orders[0], True
        if "bookId" in body:
            body["bookId"], changed = data.books[2], True
    if changed:
        case.path_parameters, case.body = path, body
    return changed


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
def test_every_operation(case: Any, app_under_test: FuzzData) -> None:
    data = app_under_test
    token = data.admin if case.path.startswith("/api/v1/admin") else data.customer
    headers = {"Authorization": f"Bearer {token}"}
    checks = [not_a_server_error, response_schema_conformance, negative_data_rejection]
    if case.path not in NOT_JSON:
        checks.append(content_type_conformance)
    case.call_and_validate(headers=headers, checks=checks, additional_checks=[error_envelope])
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and _aimed_at_real_objects(case, data):
        case.call_and_validate(headers=headers, checks=checks, additional_checks=[error_envelope])
