"""The ledger's URL (LEDGER_REDIS_URL): errors name the setting they came from, and nothing
prints a password, the Cluster client's repr included."""

from __future__ import annotations

import pytest

from callq.settings import ConfigError, Settings
from callq.store.connect import make_redis, redis_for

SECRET = "s3cret-pw-9f2"


def _settings(**kw: str) -> Settings:
    return Settings(**{"redis_url": "redis://127.0.0.1:6379/0", **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        f"sentinel://:{SECRET}@sentinel-0:99999",  # a port out of range
        f"sentinel://:{SECRET}@sentinel-0:26379/x",  # a database that is not a number
        f"nosuch://:{SECRET}@ledger:6379/0",  # not a scheme redis-py takes
    ],
)
def test_given_a_bad_ledger_redis_url_then_the_error_names_ledger_redis_url_and_not_the_password(
    url: str,
) -> None:
    with pytest.raises(ConfigError) as err:
        redis_for(_settings(ledger_redis_url=url))
    assert str(err.value).startswith("LEDGER_REDIS_URL: "), err.value
    assert SECRET not in str(err.value)


def test_given_a_bad_redis_url_and_no_ledger_redis_url_then_the_error_names_redis_url() -> None:
    with pytest.raises(ConfigError) as err:
        redis_for(_settings(redis_url=f"sentinel://:{SECRET}@sentinel-0:99999"))
    assert str(err.value).startswith("REDIS_URL: "), err.value
    assert SECRET not in str(err.value)


def test_the_cluster_clients_repr_shows_its_nodes_and_slot_and_never_the_password() -> None:
    """redis-py's pool repr prints every connection kwarg, one of which is the pool itself:
    repr(client) recursed until RecursionError (a log line or an assertion showing it)."""
    client = make_redis(f"redis+cluster://app:{SECRET}@10.0.0.1:7000,10.0.0.2:7001")
    shown = repr(client) + repr(client.connection_pool)
    assert "10.0.0.1:7000,10.0.0.2:7001" in shown and "slot=" in shown
    assert SECRET not in shown
