"""REDIS_URL's Sentinel form: parsed once, for redis-py and for kombu alike (no Redis needed)."""

from __future__ import annotations

import pytest

from callq.settings import ConfigError, Settings
from callq.store.connect import MasterCheck, is_sentinel_url, make_redis, parse_sentinel_url
from callq.transport.config import celery_config


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_given_celerys_sentinel_form_when_parsed_then_hosts_password_and_db_are_read() -> None:
    url = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://sent-3/2"
    got = parse_sentinel_url(url)
    assert got.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sent-3", 26379))
    assert (got.db, got.password, got.username) == (2, "s3cret", None)
    assert "s3cret" not in repr(got)
    # kombu reads the password and the database from the first part only: each part has them.
    assert got.celery_url() == (
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26380/2;"
        "sentinel://:s3cret@sent-3:26379/2"
    )
    assert is_sentinel_url(url) and not is_sentinel_url("redis://localhost:6379/0")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sentinel://a:26379;redis://b:6379", "part 2 of the Sentinel URL must be sentinel://"),
        ("sentinel://:pw@a:notaport", "part 1 of the Sentinel URL is not host:port"),
        ("sentinel://a:26379/x", "the database must be a number"),
        ("sentinel://a:26379/1;sentinel://b:26379/2", "two different databases"),
        ("sentinel://", "must be sentinel://host:port"),
    ],
)
def test_given_a_bad_sentinel_url_when_parsed_then_the_error_names_redis_url_and_hides_the_password(
    url: str, why: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_sentinel_url(url)
    assert str(exc.value).startswith("REDIS_URL:") and why in str(exc.value)
    assert "pw" not in str(exc.value)


def test_given_a_sentinel_url_when_celery_is_configured_then_kombu_gets_the_master_name_and_the_sentinels_password() -> (
    None
):
    s = _settings(
        redis_url="sentinel://:m@s1:26379;sentinel://s2:26379/0",
        redis_sentinel_master="calls-redis",
        redis_sentinel_password="sentinel-pw",
    )
    conf = celery_config(s, argv=["celery"])
    assert conf["broker_url"] == "sentinel://:m@s1:26379/0;sentinel://:m@s2:26379/0"
    opts = conf["broker_transport_options"]
    assert opts["master_name"] == "calls-redis"
    assert opts["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert conf["result_backend"] is None  # no result backend to point at the Sentinels
    plain = celery_config(_settings(redis_url="redis://r:6379/0"), argv=["celery"])
    assert "master_name" not in plain["broker_transport_options"]
    assert plain["broker_url"] == "redis://r:6379/0"


def test_given_the_wait_policy_when_read_then_auto_waits_for_one_replica_and_a_number_is_strict() -> (
    None
):
    auto = _settings(redis_url="redis://r:6379/0")
    assert (auto.wait_replicas, auto.wait_strict, auto.redis_wait_timeout_ms) == (1, False, 100)
    strict = _settings(redis_wait_replicas="2")
    assert (strict.wait_replicas, strict.wait_strict) == (2, True)
    off = _settings(redis_wait_replicas="0")
    assert off.wait_replicas == 0
    from callq.settings import load_settings

    with pytest.raises(ConfigError, match="REDIS_WAIT_REPLICAS"):
        load_settings(_env_file=None, redis_wait_replicas="some")
    with pytest.raises(ConfigError, match="REDIS_WAIT_TIMEOUT_MS"):
        load_settings(_env_file=None, redis_wait_timeout_ms=0)


def test_given_a_plain_redis_url_when_the_master_check_is_made_then_there_is_none() -> None:
    # The check against the Sentinels exists only for a Sentinel URL (no connection is opened).
    assert MasterCheck.of(make_redis("redis://127.0.0.1:1/0")) is None
    assert isinstance(MasterCheck.of(make_redis("sentinel://127.0.0.1:1/0")), MasterCheck)
