"""The HAProxy configurations are valid for the installed HAProxy: the one `up` generates
and the production example in deploy/haproxy.cfg (`haproxy -c` parses without binding)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bookbazar.balancer import haproxy_binary, haproxy_config
from tests.conftest import REPO_ROOT
from tests.scale.conftest import _require_haproxy


def _check(config: str, tmp_path: Path) -> None:
    _require_haproxy()
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    binary = haproxy_binary()
    assert binary is not None
    result = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_configuration_is_valid(tmp_path: Path) -> None:
    config = haproxy_config("127.0.0.1", 8000, [("127.0.0.1", 8001), ("127.0.0.1", 8002)])
    assert "stick store-response res.cook(io)" in config  # Socket.IO polling stickiness
    assert "option httpchk GET /readyz" in config
    _check(config, tmp_path)


def test_the_production_example_is_valid(tmp_path: Path) -> None:
    example = (REPO_ROOT / "deploy" / "haproxy.cfg").read_text()
    # Its TLS certificate does not exist here: check everything else.
    without_tls = "".join(line for line in example.splitlines(True) if " ssl crt " not in line)
    _check(without_tls, tmp_path)
