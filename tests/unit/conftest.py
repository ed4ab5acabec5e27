"""tests/unit needs no Redis and starts no process: asking for one fails here, pointing the
test to where it belongs."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_base() -> str:
    pytest.fail("tests/unit uses no Redis: move this test to tests/integration")


@pytest.fixture
def sim() -> None:
    pytest.fail("tests/unit starts no simulator: move this test to tests/integration")
