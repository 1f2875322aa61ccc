"""A cover for every book that has none: an SVG drawn from its title and author, in a
colour taken from its id (the same book always gets the same cover). Nothing is fetched
from elsewhere; text is escaped, so a title can never inject markup."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from html import escape

WIDTH, HEIGHT = 200, 300
# Dark enough behind white text for a contrast ratio of at least 4.5:1 (WCAG AA).
PALETTE = (
    "#1f4e79",
    "#7a1f3d",
    "#2e5e3a",
    "#5b3a7a",
    "#7a4a12",
    "#1e5b63",
    "#6b2a1a",
    "#3d3d6b",
)


def colour_of(book_id: uuid.UUID) -> str:
    return PALETTE[hashlib.sha256(book_id.bytes).digest()[0] % len(PALETTE)]


def _lines(text: str, width: int, most: int) -> list[str]:
    lines = textwrap.wrap(" ".join(text.split()), width=width) or [""]
    if len(lines) > most:
        lines = [
            *lines[: most - 1],
            textwrap.shorten(" ".join(lines[most - 1 :]), width, placeholder="…"),
        ]
    return lines


def cover_svg(book_id: uuid.UUID, title: str, author: str) -> str:
    colour = colour_of(book_id)
    title_lines = _lines(title, 16, 5)
    author_lines = _lines(author, 22, 2)
    title_tspans = "".join(
        f'<tspan x="20" dy="{0 if i == 0 else 26}">{escape(line)}</tspan>'
        for i, line in enumerate(title_lines)
    )
    author_tspans = "".join(
        f'<tspan x="20" dy="{0 if i == 0 else 18}">{escape(line)}</tspan>'
        for i, line in enumerate(author_lines)
    )
    label = escape(f"Cover of {title} by {author}", quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="{colour}"/>'
        f'<rect x="12" y="12" width="{WIDTH - 24}" height="{HEIGHT - 24}" fill="none" '
        'stroke="#ffffff" stroke-opacity="0.5" stroke-width="2"/>'
        '<text y="70" fill="#ffffff" font-family="Georgia, serif" font-size="22" '
        f'font-weight="bold">{title_tspans}</text>'
        '<text y="250" fill="#ffffff" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="14">{author_tspans}</text>'
        "</svg>"
    )
