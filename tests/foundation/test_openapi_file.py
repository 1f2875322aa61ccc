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


def test_every_operation_declares_its_success_model_and_its_errors() -> None:
    """A route added without a response model, or with an error FastAPI would document
    as its own `{detail}` shape, fails here."""
    spec = openapi_document()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            responses = operation["responses"]
            success = [code for code in responses if code.startswith("2")]
            assert len(success) == 1, f"{name}: success responses {success}"
            content = responses[success[0]].get("content", {})
            schemas = [media.get("schema") for media in content.values()]
            assert schemas and all(schemas), f"{name} declares no response model"
            if path != "/metrics":
                assert "$ref" in json.dumps(schemas), f"{name}: its model is not a named one"
            errors = {code: body for code, body in responses.items() if code >= "400"}
            if path not in {"/healthz", "/metrics"}:  # the two that touch no dependency
                assert "503" in errors, f"{name} does not declare 503"
            if operation.get("security"):
                assert "401" in errors, f"{name} takes a token but declares no 401"
            for code, body in errors.items():
                ref = json.dumps(body.get("content", {}))
                assert "ErrorEnvelope" in ref, f"{name} {code} is not the error envelope"
