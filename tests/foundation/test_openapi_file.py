"""The committed contract (`docs/openapi.json`) is what the app serves, so every change
to the HTTP contract shows up in review as a change to that file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bookbazar import __version__
from bookbazar.app import openapi_document
from bookbazar.cli import app as cli

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = ".venv/bin/bookbazar openapi --output docs/openapi.json"


def _operations(spec: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in spec.get("paths", {}).items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    }


def test_the_committed_spec_is_the_one_the_app_serves() -> None:
    assert COMMITTED.exists(), f"docs/openapi.json is missing: run `{REGENERATE}`"
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    current = openapi_document()
    added = sorted(_operations(current) - _operations(committed))
    removed = sorted(_operations(committed) - _operations(current))
    assert committed == current, (
        f"docs/openapi.json differs from the app's contract (operations added: {added}, "
        f"removed: {removed}; otherwise a schema, parameter or response changed). "
        f"Run `{REGENERATE}` and commit the file with the change."
    )


def test_the_openapi_command_prints_the_document_and_writes_it(tmp_path: Path) -> None:
    printed = CliRunner().invoke(cli, ["openapi"])
    assert printed.exit_code == 0, printed.output
    spec = json.loads(printed.stdout)
    assert spec == openapi_document()
    assert "POST /api/v1/orders" in _operations(spec)

    target = tmp_path / "openapi.json"
    written = CliRunner().invoke(cli, ["openapi", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert json.loads(target.read_text(encoding="utf-8")) == spec


def test_version_option() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"bookbazar {__version__}"


def test_the_contract_says_what_the_server_requires() -> None:
    spec = openapi_document()
    place = spec["paths"]["/api/v1/orders"]["post"]
    [key] = [p for p in place["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    schemes = spec["components"]["securitySchemes"]
    assert schemes["accessTokenCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "accessToken",
        "description": "The HttpOnly cookie /auth/login sets (the same JWT)",
    }
    secured = [
        operation
        for item in spec["paths"].values()
        for operation in item.values()
        if operation.get("security")
    ]
    assert len(secured) > 15
    for operation in secured:
        assert {"HTTPBearer": []} in operation["security"]
        assert {"accessTokenCookie": []} in operation["security"], operation["operationId"]
