"""LEDGER_REDIS_URL in Cluster form: parsed, refused with the field named, never echoing a
password; and the tagged key layout."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from callq.settings import ConfigError, Settings
from callq.store.connect import is_cluster_url, parse_cluster_url
from callq.store.keys import Keys


def test_given_a_cluster_url_then_every_node_and_the_credentials_are_read() -> None:
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0"
    assert is_cluster_url(url) and is_cluster_url("REDISS+CLUSTER://h:1")
    target = parse_cluster_url(url)
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (target.username, target.password, target.tls) == ("app", "s@cret", False)
    assert "s@cret" not in repr(target) and "***" in repr(target)
    assert parse_cluster_url("rediss+cluster://h:6379").tls


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://", "names no node"),
        ("redis+cluster://host", "node 1 of the Cluster URL is not host:port"),
        ("redis+cluster://h:1,h:x", "node 2"),
        ("redis+cluster://:pw@h:1/3", "database 0 only"),
    ],
)
def test_given_a_bad_cluster_url_then_the_error_names_the_setting_and_hides_the_password(
    url: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cluster_url(url)
    assert str(err.value).startswith("LEDGER_REDIS_URL: ") and says in str(err.value)
    assert "pw" not in str(err.value)


def test_given_a_cluster_ledger_then_every_key_is_tagged_into_one_slot() -> None:
    s = Settings(
        _env_file=None, redis_url="redis://b:6379/0", ledger_redis_url="redis+cluster://h:1"
    )  # type: ignore[call-arg]
    keys = Keys.for_settings(s)
    assert keys.tagged and keys.version == 2 and keys.layout() == "{callq}:layout"
    names = [keys.call("c:1"), keys.deadlines(), keys.limiter("a"), keys.feed("a"), keys.sids()]
    assert all(n.startswith("{callq}:") for n in names)
    assert {key_slot(n.encode()) for n in names} == {key_slot(b"{callq}")}
    plain = Keys.for_settings(Settings(_env_file=None, redis_url="redis://b:6379/0"))  # type: ignore[call-arg]
    assert not plain.tagged and plain.call("c:1") == "callq:call:c:1" and plain.version == 1
