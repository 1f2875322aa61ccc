from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notify.smtp import MailServer, mail_server


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with mail_server() as server:
        yield server
