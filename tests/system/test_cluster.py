"""A campaign with the ledger on a real Redis Cluster, through real workers.

Three masters on loopback (devstack.cluster) hold the ledger and the limiter
(``LEDGER_REDIS_URL=redis+cluster://...``, key layout 2: every key in the slot of
``{KEY_PREFIX}``); Celery's broker stays on the test's Redis (``REDIS_URL``). Two real Celery
workers, the real callback receiver, and the simulator with busy outcomes (the campaign
redials them once), callbacks, duplicated callbacks and resets after origination (calls left
in doubt, settled by reconcile). The chaos run's verdict (chaos/verdict.py) must pass every
line: none dialled twice, none lost, every Sid right, 0 x 429; and no CROSSSLOT or MOVED
error in any log.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.intake.report import write_report
from callq.settings import Settings
from callq.store.callbacks import CallbackEvent
from callq.store.connect import broker_redis_for, redis_for
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.store.records import State
from chaos.verdict import CampaignData, judge, legitimately_in_doubt
from devstack.cluster import ClusterStack
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import Workers, callback_receiver, wait_for

pytestmark = pytest.mark.slow

N = 60
CAMPAIGN = "cluster"


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (20, 2.0)  # 10 calls/s: the campaign and its redials in ~10 s


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterStack]:
    with ClusterStack(tmp_path / "cluster") as stack:
        yield stack


def _unsettled(ledger: Ledger, settings: Settings) -> list[str]:
    sec, usec = ledger.redis.time()
    now_ms = sec * 1000 + usec // 1000
    waiting = (State.QUEUED, State.RETRYING, State.DIALING)
    return [
        f"{r.request_id}:{r.state}"
        for r in ledger.call_records(CAMPAIGN)
        if r.state in waiting
        or (r.state is State.IN_DOUBT and not legitimately_in_doubt(r, settings, now_ms))
    ]


def _collect(ledger: Ledger, accepted: list[str]) -> CampaignData:
    records = list(ledger.call_records(CAMPAIGN))
    buf = io.StringIO()
    write_report(ledger, CAMPAIGN, buf, "csv")
    return CampaignData(
        campaign=CAMPAIGN,
        accepted=accepted,
        records=records,
        status=ledger.status(CAMPAIGN).as_dict(),
        report=list(csv.DictReader(io.StringIO(buf.getvalue()))),
        attempts={r.request_id: ledger.attempts_log(r.request_id) for r in records},
    )


def _pending_callbacks(ledger: Ledger) -> dict[str, str]:
    prefix = ledger.keys.pending_callback("")
    out: dict[str, str] = {}
    for key in ledger.redis.scan_iter(match=prefix + "*", count=1000):
        raw = ledger.redis.get(key)
        if raw is not None:
            out[str(key)[len(prefix) :]] = CallbackEvent.from_json(str(raw)).status
    return out


def test_given_the_ledger_on_a_cluster_when_a_campaign_with_redials_callbacks_and_reconcile_runs_then_every_verdict_line_passes(
    settings: Settings,
    cluster: ClusterStack,
    sim: Any,
    tmp_path: Path,
    request: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    on_cluster = settings.model_copy(
        update={
            "ledger_redis_url": cluster.url,
            # Short proofs, so a call a reset left in doubt is settled within seconds.
            "exotel_origination_window_seconds": 1.0,
            "exotel_read_timeout": 1.0,
        }
    )
    sim.configure(
        latency=True,
        time_scale=0.02,
        callbacks=True,
        p_duplicate_callback=0.2,
        p_reset_after=0.1,
        status_mix={"completed": 0.5, "busy": 0.35, "no-answer": 0.1, "failed": 0.05},
    )
    with callback_receiver(on_cluster) as s:
        workers = Workers(s, tmp_path)
        request.addfinalizer(workers.stop)
        ledger = Ledger(redis_for(s), Keys.for_settings(s), broker=broker_redis_for(s))
        assert ledger.keys.tagged
        result = Enqueuer(s).enqueue_file(
            as_stream(campaign_csv(N, time_limit=2, time_out=1)),
            CAMPAIGN,
            options=CampaignOptions(redial_on=("busy",), redials=1, redial_interval=1.0),
        )
        assert result.accepted == N
        accepted = list(ledger.iter_request_ids(CAMPAIGN))
        workers.start(2, concurrency=8)

        def settled() -> bool:
            truth = sim.truth()
            return (
                not _unsettled(ledger, s)
                and truth["callbacks"]["pending"] == 0
                and ledger.redis.zcard(ledger.keys.awaiting_status()) == 0
            )

        wait_for(
            settled,
            timeout=90,
            interval=0.5,
            message=lambda: (
                f"{ledger.status(CAMPAIGN).states} {_unsettled(ledger, s)[:5]} "
                f"{workers.output()[-3000:]}"
            ),
        )
        truth = sim.truth()
        sec, usec = ledger.redis.time()
        checks, figures = judge(
            [_collect(ledger, accepted)],
            truth,
            s,
            sec * 1000 + usec // 1000,
            pending_callbacks=_pending_callbacks(ledger),
        )
        table = "\n".join(
            f"{'ok ' if c.ok else 'BAD'} {c.name}: {c.value} (promised {c.expected}) "
            f"{list(c.examples)}"
            for c in checks
        )
        output = workers.output()
    assert all(c.ok for c in checks), f"{table}\n{output[-3000:]}"
    # What the campaign was to go through did happen.
    assert truth["rate_limited"] == 0
    assert ledger.status(CAMPAIGN).redials > 0, table  # busy calls redialled
    assert figures["ever_in_doubt"] > 0, table  # resets after origination: reconcile
    assert len(truth["callbacks"]["deliveries"]) >= N, table
    # No script spanned slots, and the client never met a slot elsewhere.
    logs = output + "\n" + caplog.text
    for word in ("CROSSSLOT", "MOVED", "Traceback"):
        assert word not in logs, [line for line in logs.splitlines() if word in line][:5]
    # Everything of the deployment is in its one slot, on one master.
    home = cluster.master_of(ledger.keys.slot_key)
    elsewhere = [
        k
        for i in range(len(cluster.nodes))
        if i != home
        for k in cluster.client(i).keys(f"*{s.key_prefix}*")
    ]
    assert elsewhere == []
