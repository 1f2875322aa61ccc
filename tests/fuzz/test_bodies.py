"""Hypothesis bodies against the cart, order and payment routes: any JSON value, anything
shaped almost like a valid body, or raw bytes. Every answer is below 500, an error is
the error envelope, and a refused request changes nothing (cart, orders, stock):
DESIGN.md §3 "bad input gets a 4xx ... and nothing is changed"."""

from __future__ import annotations

import string
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import BASE, EXAMPLES, REPRODUCIBLE, FuzzData, client

ROUTES = ["/api/v1/cart/add", "/api/v1/cart/remove", "/api/v1/orders", "/api/v1/payments/init"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# What a client can put in a header: visible ASCII (none, empty and > 255 characters too).
VISIBLE = string.ascii_letters + string.digits + string.punctuation
header_text = st.text(alphabet=VISIBLE, max_size=300)


def _ids(data: FuzzData) -> st.SearchStrategy[Any]:
    return (
        st.sampled_from(data.books + data.orders)
        | st.uuids().map(str)
        | st.sampled_from(["", "not-a-uuid", data.books[0].upper(), data.books[0][:-1]])
        | json_values
    )


def _near_valid(data: FuzzData) -> st.SearchStrategy[Any]:
    """Bodies with the right field names and wrong, edge or valid values."""
    quantity = st.integers(-3, 14) | st.sampled_from([0, 1, 10, 11, 2**31, 2**63]) | json_values
    address = st.fixed_dictionaries(
        {
            "name": st.text(max_size=210),
            "line1": st.text(max_size=10),
            "city": st.text(max_size=10),
            "postalCode": st.text(max_size=25),
            "country": st.sampled_from(["IN", "in", "IND", ""]) | st.text(max_size=3),
        },
        optional={"line2": json_values, "phone": json_values, "extra": json_values},
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"bookId": _ids(data), "quantity": quantity}, optional={"extra": json_values}
        ),
        st.fixed_dictionaries({"bookId": _ids(data)}, optional={"quantity": quantity}),
        st.fixed_dictionaries({"orderId": _ids(data)}, optional={"extra": json_values}),
        st.fixed_dictionaries({}, optional={"shippingAddress": address | json_values}),
    )


def _snapshot(http: requests.Session, data: FuzzData) -> tuple[Any, ...]:
    headers = data.customer_headers
    cart = http.get(f"{BASE}/api/v1/cart", headers=headers).json()["data"]
    orders = http.get(f"{BASE}/api/v1/orders", headers=headers).json()["data"]
    books = http.get(f"{BASE}/api/v1/books?pageSize=100").json()["data"]["items"]
    return (
        cart["version"],
        [(i["bookId"], i["quantity"]) for i in cart["items"]],
        [(o["orderId"], o["status"], o["expiresAt"]) for o in orders["items"]],
        sorted((b["id"], b["available"]) for b in books),
    )


def _check_envelope(resp: requests.Response) -> None:
    body = resp.json()
    assert body["success"] is False and body["statusCode"] == resp.status_code, body
    assert isinstance(body["message"], str) and body["message"].strip(), body


@pytest.mark.parametrize("path", ROUTES)
def test_any_body_is_answered_and_a_refused_one_changes_nothing(
    path: str, app_under_test: FuzzData
) -> None:
    data = app_under_test
    bodies = st.one_of(
        json_values.map(lambda v: ("json", v)),
        _near_valid(data).map(lambda v: ("json", v)),
        st.binary(max_size=120).map(lambda v: ("raw", v)),
    )

    with client() as http:
        # Something in the cart, so an order (and its refusal) has something to work on.
        added = http.post(
            f"{BASE}/api/v1/cart/add",
            json={"bookId": data.books[1], "quantity": 1},
            headers=data.customer_headers,
        )
        assert added.status_code == 200, added.text

        @settings(
            max_examples=EXAMPLES * 2,
            derandomize=REPRODUCIBLE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            body=bodies,
            key=st.none() | header_text | st.uuids().map(str),
            content_type=st.sampled_from(["application/json", "text/plain", None]),
        )
        def send_one(body: tuple[str, Any], key: str | None, content_type: str | None) -> None:
            kind, value = body
            headers = dict(data.customer_headers)
            if key is not None:
                headers["Idempotency-Key"] = key
            if content_type is not None:
                headers["Content-Type"] = content_type
            before = _snapshot(http, data)
            if kind == "json" and content_type == "application/json":
                resp = http.post(f"{BASE}{path}", json=value, headers=headers)
            else:
                raw = value if kind == "raw" else repr(value).encode()
                resp = http.post(f"{BASE}{path}", data=raw, headers=headers)
            assert resp.status_code < 500, (resp.status_code, resp.text, body)
            if resp.status_code >= 400:
                _check_envelope(resp)
                assert _snapshot(http, data) == before, (resp.status_code, resp.text, body)

        send_one()
