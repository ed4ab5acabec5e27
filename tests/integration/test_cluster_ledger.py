"""The ledger on a real Redis Cluster: three masters on loopback (devstack.cluster).

``LEDGER_REDIS_URL=redis+cluster://...``: every key of the deployment is tagged ``{prefix}``
(key layout 2), so it lives in one hash slot and every script touches one slot; the client
is a plain ``redis.Redis`` pinned to the master of that slot (callq.store.connect.SlotPool).

The Ledger API tests of test_ledger, test_limiter, test_callback_store, test_breaker,
test_reconcile and test_dialer run here again, unchanged, on the Cluster (this module's
``settings``, ``rclient``, ``keys`` and ``ledger`` put them there), then what is the
Cluster's own: one slot for everything, the layout check, and a slot that moves.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from callq.intake.enqueue import Enqueuer
from callq.settings import ConfigError, Settings
from callq.store.connect import SlotPool, broker_redis_for, make_redis, redis_for
from callq.store.keys import Keys
from callq.store.layout import check_layout
from callq.store.ledger import ENQUEUE_CHUNK, Ledger
from callq.sweeping.feed import Feeder
from callq.transport.config import make_app
from devstack.cluster import ClusterStack
from tests.campaigns import agent_csv, as_stream
from tests.conftest import make_dialer, wait_for
from tests.integration import (
    test_breaker,
    test_callback_store,
    test_dialer,
    test_ledger,
    test_limiter,
    test_reconcile,
)

# The Ledger API tests (and their modules' fixtures), collected here on the Cluster.
_SKIP = {
    # Pushes onto a list of the ledger's own in the script: a ledger on a Cluster is always
    # apart from the broker, and its push is tested below.
    "test_given_a_priority_batch_over_one_script_call_when_enqueued_then_each_row_is_pushed_as_alone",
}
for _mod in (
    test_ledger,
    test_limiter,
    test_callback_store,
    test_breaker,
    test_reconcile,
    test_dialer,
):
    for _name, _obj in vars(_mod).items():
        is_test = _name.startswith("test_") and isinstance(_obj, types.FunctionType)
        is_fixture = type(_obj).__name__ == "FixtureFunctionDefinition"
        if (is_test and _name not in _SKIP) or is_fixture:
            assert _name not in globals() or globals()[_name] is _obj, _name
            globals()[_name] = _obj


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    with ClusterStack(tmp_path_factory.mktemp("cluster")) as stack:
        yield stack


@pytest.fixture
def settings(settings: Settings, cluster: ClusterStack) -> Settings:
    return settings.model_copy(update={"ledger_redis_url": cluster.url})


@pytest.fixture
def rclient(settings: Settings) -> Iterator[redis.Redis]:  # type: ignore[type-arg]
    client = redis_for(settings)
    yield client
    client.close()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    k = Keys.for_settings(settings)
    assert k.tagged
    return k


@pytest.fixture
def ledger(rclient: redis.Redis, keys: Keys, settings: Settings) -> Ledger:  # type: ignore[type-arg]
    return Ledger(rclient, keys, broker=broker_redis_for(settings))


def _all_keys(cluster: ClusterStack) -> dict[int, list[str]]:
    return {i: sorted(cluster.client(i).keys("*")) for i in range(len(cluster.nodes))}


def test_given_a_campaign_through_every_step_then_every_key_is_in_the_deployment_slot(
    settings: Settings, ledger: Ledger, cluster: ClusterStack, sim: Any
) -> None:
    keys = ledger.keys
    Enqueuer(settings).enqueue_file(as_stream(agent_csv(12)), "one-slot")
    feeder = Feeder(ledger, settings, make_dialer(settings, ledger), make_app(settings))
    assert feeder.drain_once()["fed"] == 12
    dialer = make_dialer(settings, ledger)
    for r in ledger.iter_request_ids("one-slot"):
        assert dialer.place(r).kind in ("originated", "late"), r
    ledger.cancel("one-slot")
    home = cluster.master_of(keys.slot_key)
    found = _all_keys(cluster)
    mine = [k for k in found[home] if k.startswith(keys.base)]
    assert len(mine) > 12 * 2  # records, attempts, and the shared indexes
    assert keys.layout() in mine and keys.call(next(iter(ledger.iter_request_ids("one-slot"))))
    # Nothing of this deployment on the other masters.
    others = [k for i, ks in found.items() if i != home for k in ks if settings.key_prefix in k]
    assert others == []


def test_given_a_cluster_then_a_priority_campaign_pushes_on_the_broker(
    settings: Settings, ledger: Ledger
) -> None:
    k = ledger.keys
    queue = f"{settings.broker_key_prefix}test-queue"
    ids = [f"c1:r{i}" for i in range(ENQUEUE_CHUNK + 3)]
    records = [(r, {"from": "+919000000001"}) for r in ids]
    codes = ledger.enqueue_many(
        "c1", records, queue_key=queue, messages=[f"m-{r}" for r in ids], queued_overdue=600.0
    )
    assert codes == [1] * len(ids)
    assert ledger.broker is not None
    assert ledger.broker.lrange(queue, 0, -1)[::-1] == [f"m-{r}" for r in ids]  # in order
    assert set(ledger.redis.zrange(k.deadlines(), 0, -1)) == set(ids)
    ledger.broker.delete(queue)


def test_given_a_tagged_ledger_then_the_layout_is_2_and_another_layout_is_refused(
    settings: Settings,
    rclient: redis.Redis,
    keys: Keys,
    redis_url: str,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    assert check_layout(rclient, keys, settings) == 2
    assert rclient.get(keys.layout()) == "2"
    assert check_layout(rclient, keys, settings) == 2  # again: the same
    # A ledger written in another layout (1 under the tagged name: a hand edit, or a
    # future version) is refused, naming the setting and the procedure.
    rclient.set(keys.layout(), "1")
    with pytest.raises(ConfigError) as err:
        check_layout(rclient, keys, settings)
    text = str(err.value)
    assert "KEY_PREFIX" in text and "LEDGER_REDIS_URL" in text and "Drain" in text
    # On one Redis, a plain process finds a tagged ledger's layout key and refuses.
    plain = make_redis(redis_url)
    plain.set(Keys(prefix, tagged=True).layout(), "2")
    try:
        with pytest.raises(ConfigError, match="layout 2"):
            check_layout(plain, Keys(prefix), None)
        assert plain.get(Keys(prefix).layout()) is None  # nothing written on the way
    finally:
        plain.delete(Keys(prefix, tagged=True).layout())
    assert check_layout(plain, Keys(prefix)) == 1  # a plain ledger: layout 1, written
    assert plain.get(Keys(prefix).layout()) == "1"
    plain.close()


def test_given_the_slot_moves_to_another_master_then_the_client_follows_the_moved_reply(
    cluster: ClusterStack, prefix: str
) -> None:
    # A slot that holds no key yet (other tests' prefixes may share a slot): a master moves
    # only an empty slot at once ("I still hold keys for this hash slot" otherwise).
    for n in range(1000):
        keys = Keys(f"{prefix}mv{n}", tagged=True)
        home = cluster.master_of(keys.slot_key)
        slot = int(cluster.client(home).execute_command("CLUSTER KEYSLOT", keys.slot_key))  # type: ignore[no-untyped-call]
        if cluster.client(home).execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0:  # type: ignore[no-untyped-call]
            break
    client = make_redis(cluster.url, slot_key=keys.slot_key)
    pool = client.connection_pool
    assert isinstance(pool, SlotPool) and pool.slot == slot
    assert client.get(keys.call("x")) is None
    to = (home + 1) % len(cluster.nodes)

    def move(node: int) -> None:
        node_id = cluster.client(node).execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        for i in range(len(cluster.nodes)):
            cluster.client(i).execute_command("CLUSTER SETSLOT", slot, "NODE", node_id)  # type: ignore[no-untyped-call]

    move(to)
    try:
        with pytest.raises(redis.exceptions.MovedError):
            client.set(keys.call("x"), "1")  # the one command that meets the move
        assert pool.master() == ("127.0.0.1", cluster.nodes[to].port)
        assert client.set(keys.call("x"), "1")
        assert cluster.client(to).get(keys.call("x")) == "1"
    finally:
        client.delete(keys.call("x"))
        client.close()
        move(home)  # back where master_of expects it, for the tests that follow


def test_given_the_slots_master_killed_when_its_replica_is_promoted_then_the_client_follows_and_the_limiter_is_held(
    tmp_path: Any, settings: Settings
) -> None:
    from callq.dialing.limiter import Limiter
    from callq.store.epoch import MasterWatch

    with ClusterStack(tmp_path / "failover", replicas=3) as stack:
        s = settings.model_copy(update={"ledger_redis_url": stack.url})
        keys = Keys.for_settings(s)
        watch = MasterWatch(keys, s.failover_hold_seconds)
        client = make_redis(stack.url, slot_key=keys.slot_key, on_connect=watch.on_connect)
        limiter = Limiter.for_settings(client, keys, s, hold=watch)
        assert limiter.reserve().granted and watch.held_for() == 0
        client.set(keys.call("kept"), "1")
        home = stack.master_of(keys.slot_key)
        replica = stack.masters + home
        assert client.execute_command("WAIT", 1, 2000) == 1  # type: ignore[no-untyped-call]
        stack.kill(home)

        def answers() -> bool:
            try:
                return client.get(keys.call("kept")) == "1"
            except redis.RedisError:
                return False  # refused, or the old master's slot not yet failed over

        wait_for(answers, timeout=30, interval=0.2, message="the promoted replica answering")
        assert client.connection_pool.master() == ("127.0.0.1", stack.nodes[replica].port)  # type: ignore[attr-defined]
        # The new master's run_id differs from the one the ledger kept: every limiter shut.
        assert watch.held_for() > 0 and not limiter.reserve().granted
        client.close()
