"""Email bodies, plain text and HTML, for each kind of order notification."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from bookbazar.kit.money import format_money

# Which order events send an email, and the notification kind each one is.
KIND_FOR_EVENT = {
    "order.paid": "confirmation",
    "order.shipped": "shipped",
    "order.expired": "expired",
    "order.refunded": "refunded",
}


@dataclass(frozen=True, slots=True)
class MailContext:
    name: str
    order_id: str
    total: int
    currency: str
    # (title, quantity, line total)
    lines: list[tuple[str, int, int]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    text: str
    html: str


def _short(order_id: str) -> str:
    return order_id.split("-")[0].upper()


def render(kind: str, ctx: MailContext) -> Email:
    """The email for one notification kind (KeyError for an unknown kind)."""
    return _RENDERERS[kind](ctx)


def _wrap(title: str, paragraphs: list[str], table: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<!doctype html><html><body style='font-family:system-ui,sans-serif'>"
        f"<h2>{html.escape(title)}</h2>{body}{table}"
        "<p style='color:#666'>Book Bazar</p></body></html>"
    )


def _lines_table(ctx: MailContext) -> tuple[str, str]:
    text = "\n".join(
        f"  {qty} x {title}  {format_money(total, ctx.currency)}" for title, qty, total in ctx.lines
    )
    rows = "".join(
        f"<tr><td>{qty} &times; {html.escape(title)}</td>"
        f"<td style='text-align:right'>{html.escape(format_money(total, ctx.currency))}</td></tr>"
        for title, qty, total in ctx.lines
    )
    return text, f"<table>{rows}</table>" if rows else ""


def _confirmation(ctx: MailContext) -> Email:
    total = format_money(ctx.total, ctx.currency)
    lines_text, lines_html = _lines_table(ctx)
    greeting = f"Hello {ctx.name},"
    text = (
        f"{greeting}\n\nThank you! We received your payment for order {ctx.order_id}.\n\n"
        f"{lines_text}\n\nTotal paid: {total}\n\nWe will email you again when it ships.\n"
    )
    page = _wrap(
        "Your order is confirmed",
        [
            html.escape(greeting),
            f"Thank you! We received your payment for order "
            f"<code>{html.escape(ctx.order_id)}</code>.",
            f"Total paid: <strong>{html.escape(total)}</strong>",
            "We will email you again when it ships.",
        ],
        lines_html,
    )
    return Email(f"Order {_short(ctx.order_id)} confirmed", text, page)


def _shipped(ctx: MailContext) -> Email:
    tracking = str(ctx.data.get("trackingNumber") or "unknown")
    carrier = str(ctx.data.get("carrier") or "our carrier")
    text = (
        f"Hello {ctx.name},\n\nYour order {ctx.order_id} is on its way with {carrier}.\n"
        f"Tracking number: {tracking}\n"
    )
    page = _wrap(
        "Your order has shipped",
        [
            html.escape(f"Hello {ctx.name},"),
            f"Your order <code>{html.escape(ctx.order_id)}</code> is on its way with "
            f"{html.escape(carrier)}.",
            f"Tracking number: <strong>{html.escape(tracking)}</strong>",
        ],
    )
    return Email(f"Order {_short(ctx.order_id)} shipped - tracking {tracking}", text, page)


def _expired(ctx: MailContext) -> Email:
    text = (
        f"Hello {ctx.name},\n\nYour order {ctx.order_id} was not paid in time, so the books "
        "we held for you were released. Nothing was charged; you can order them again.\n"
    )
    page = _wrap(
        "Your order expired",
        [
            html.escape(f"Hello {ctx.name},"),
            f"Your order <code>{html.escape(ctx.order_id)}</code> was not paid in time, so "
            "the books we held for you were released.",
            "Nothing was charged; you can order them again.",
        ],
    )
    return Email(f"Order {_short(ctx.order_id)} expired", text, page)


def _refunded(ctx: MailContext) -> Email:
    total = format_money(ctx.total, ctx.currency)
    refund = str(ctx.data.get("refundId") or "")
    text = (
        f"Hello {ctx.name},\n\nYour payment for order {ctx.order_id} arrived after the order "
        f"had ended and the books were no longer available, so we refunded {total}.\n"
        f"Refund reference: {refund}\n"
    )
    page = _wrap(
        "Your payment was refunded",
        [
            html.escape(f"Hello {ctx.name},"),
            f"Your payment for order <code>{html.escape(ctx.order_id)}</code> arrived after "
            "the order had ended and the books were no longer available.",
            f"We refunded <strong>{html.escape(total)}</strong>. "
            f"Refund reference: {html.escape(refund)}",
        ],
    )
    return Email(f"Order {_short(ctx.order_id)} refunded", text, page)


_RENDERERS = {
    "confirmation": _confirmation,
    "shipped": _shipped,
    "expired": _expired,
    "refunded": _refunded,
}
