"""The feed through real workers at the shipped defaults: an agent's click-to-call file dialled whole,
the limit used at steady state, and a one-call campaign's turn beside a big one."""

from __future__ import annotations

import bisect
import io
import time
from typing import Any

import pytest

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.campaigns import agent_csv, as_stream, mobile, verdict
from tests.conftest import SIM_SID, Workers, wait_for


@pytest.mark.slow
def test_given_one_agent_number_on_every_row_when_the_campaign_runs_then_every_row_is_dialled_once(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    res = Enqueuer(settings).enqueue_file(as_stream(agent_csv(300)), "agent")
    assert (res.accepted, res.duplicates) == (300, [])
    workers.start(2)
    wait_for(
        lambda: ledger.status("agent").states["originated"] == 300,
        timeout=90,
        message=lambda: f"{ledger.status('agent').states} {workers.output()[-2000:]}",
    )
    truth = sim.truth()
    v = verdict(ledger, "agent", truth)
    assert v["duplicates"] == [] and v["wrong_sid"] == []
    assert sorted(truth["by_custom_field"].values()) == [1] * 300
    assert sorted(truth["by_to"]) == sorted(mobile("97", i) for i in range(300))
    assert truth["rate_limited"] == 0


@pytest.mark.slow
class TestTheLimitIsUsed:
    """100 per 5 s (20/s), the shipped defaults at the test speed otherwise."""

    @pytest.fixture
    def sim_limit(self) -> tuple[int, float]:
        return (100, 5.0)

    def test_given_a_campaign_longer_than_three_periods_when_dialled_then_the_limit_is_used(
        self, settings: Settings, sim: Any, workers: Workers, ledger: Ledger
    ) -> None:
        sim.configure(latency=True, time_scale=1 / 12)
        workers.start(3)
        time.sleep(3.0)  # the workers are up: what follows is the campaign's own pace
        began = time.monotonic()
        Enqueuer(settings).enqueue_file(as_stream(agent_csv(450)), "full")
        wait_for(lambda: ledger.status("full").states["originated"] == 450, timeout=90)
        arrivals = sorted(t for t, _ in sim.arrivals()["accounts"][SIM_SID])
        truth = sim.truth()
        assert truth["rate_limited"] == 0 and truth["max_in_window"][SIM_SID] <= 100
        # Steady state: from one period after the first request to one period before the last.
        a, b = arrivals[0] + 5.0, arrivals[-1] - 5.0
        used = (bisect.bisect_right(arrivals, b) - bisect.bisect_left(arrivals, a)) / ((b - a) * 20)
        # The limit allows 20/s less the margin (98 %); parking, before the feed, used 49-56 %.
        assert used >= 0.90, f"{used:.1%} of the limit at steady state"
        assert arrivals[0] - began < 3.0  # the first request came at once, not a sweep later

    def test_given_a_big_campaign_saturating_when_a_one_call_campaign_comes_then_it_goes_next(
        self, settings: Settings, sim: Any, workers: Workers, ledger: Ledger
    ) -> None:
        enq = Enqueuer(settings)
        enq.enqueue_file(as_stream(agent_csv(600)), "big")
        workers.start(2)
        wait_for(lambda: ledger.status("big").states["originated"] >= 100, timeout=60)
        enq.enqueue_file(io.BytesIO(agent_csv(1, start=5000)), "small")
        (small,) = ledger.iter_request_ids("small")
        wait_for(lambda: bool(ledger.get(small).get("sent_at")), timeout=30)
        sent_at = int(ledger.get(small)["sent_at"])
        created_at = int(ledger.get(small)["created_at"])
        ahead = sum(
            1
            for rec in ledger.iter_records("big")
            if created_at < int(rec.get("sent_at") or 0) < sent_at
        )
        # Round-robin: it waits for the permits already handed out within the lead (0.5 s at
        # 20/s: 10) and its turn, not for the big campaign's backlog (hundreds of calls).
        assert ahead <= 15, f"{ahead} of the big campaign's calls went out ahead of it"
        assert ledger.status("big").states["queued"] > 100  # the big one was still going
