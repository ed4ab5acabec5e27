"""The per-number cap with real workers racing over two campaigns on two accounts that
share numbers: the simulator's ground truth shows no number called more than the cap, and
the ledger shows the rest skipped (past end_at) or held until the number could be called."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.intake.report import report_rows
from callq.settings import Settings
from callq.store.ledger import Ledger
from simulator import Account, SimConfig, Simulator
from tests.campaigns import as_stream, mobile
from tests.conftest import SIM_KEY, SIM_SID, SIM_TOKEN, Workers, make_settings, wait_for

pytestmark = pytest.mark.slow

SECOND = ("second-sid", "second-key", "second-token")


def rows(caller: str, numbers: range) -> bytes:
    """One call per number in ``numbers``, each from its own ``caller``-prefixed number."""
    lines = ["From,To,CallerId,CustomField"]
    lines += [f"{mobile(caller, i)},{mobile('97', i)},08030752400,n-{i}" for i in numbers]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def two_accounts(settings: Settings) -> Iterator[tuple[Settings, Any]]:
    """The test's settings with a second account, both on one simulator."""
    config = SimConfig(
        accounts=[
            Account(SIM_SID, SIM_KEY, SIM_TOKEN, rate_limit=100, period=5.0),
            Account(*SECOND, rate_limit=100, period=5.0),
        ],
        latency=False,
        callbacks=False,
        seed=11,
    )
    sim = Simulator(config).start()
    both = make_settings(
        **{
            **settings.model_dump(),
            "exotel_base_url": sim.url,
            "rate_limit_calls": 100,
            "rate_limit_period_seconds": 5.0,
            "exotel_accounts": {
                "second": {"account_sid": SECOND[0], "api_key": SECOND[1], "api_token": SECOND[2]}
            },
        }
    )
    try:
        yield both, sim
    finally:
        sim.stop()


def settled(ledger: Ledger, *campaigns: str) -> bool:
    return all(
        sum(ledger.status(c).states[s] for s in ("queued", "dialing", "retrying", "in_doubt")) == 0
        for c in campaigns
    )


def test_given_a_daily_cap_when_two_campaigns_on_two_accounts_share_numbers_then_each_is_called_once(
    two_accounts: tuple[Settings, Any], ledger: Ledger, tmp_path: Path
) -> None:
    settings, sim = two_accounts
    settings = settings.model_copy(update={"number_daily_cap": 1})
    end_at = datetime.now(UTC) + timedelta(minutes=10)
    enq = Enqueuer(settings)
    # Numbers 0-29 in one campaign, 10-39 in the other: 20 shared, 40 numbers in all.
    enq.enqueue_file(
        as_stream(rows("98", range(30))), "capa", options=CampaignOptions(end_at=end_at)
    )
    enq.enqueue_file(
        as_stream(rows("96", range(10, 40))),
        "capb",
        options=CampaignOptions(account="second", end_at=end_at),
    )
    workers = Workers(settings, tmp_path)
    try:
        workers.start(2, concurrency=8)
        wait_for(lambda: settled(ledger, "capa", "capb"), timeout=45)
    finally:
        workers.stop()
    truth = sim.truth()
    assert max(truth["by_to"].values()) == 1, truth["by_to"]
    assert sorted(truth["by_to"]) == sorted(mobile("97", i) for i in range(40))
    by_account: dict[str, int] = defaultdict(int)
    for call in truth["calls"]:
        by_account[call["account_sid"]] += 1
    assert set(by_account) == {SIM_SID, SECOND[0]}  # both accounts dialled
    states: dict[str, int] = defaultdict(int)
    for c in ("capa", "capb"):
        for s, n in ledger.status(c).states.items():
            states[s] += n
    assert (states["originated"], states["skipped"]) == (40, 20)
    skipped = [
        r for c in ("capa", "capb") for r in report_rows(ledger, c) if r["state"] == "skipped"
    ]
    assert len(skipped) == 20
    assert all("number cap 1/1d" in r["last_error"] for r in skipped)
    assert all(r["attempts"] == "0" for r in skipped)  # nothing was sent for them
    assert {r["To"] for r in skipped} == {mobile("97", i) for i in range(10, 30)}


def test_given_a_short_campaign_cap_when_numbers_are_shared_then_the_second_call_waits_the_period(
    two_accounts: tuple[Settings, Any], ledger: Ledger, tmp_path: Path
) -> None:
    settings, sim = two_accounts
    enq = Enqueuer(settings)
    # Every number in both campaigns, each campaign at most 1 call per number per 3 s.
    enq.enqueue_file(
        as_stream(rows("98", range(8))), "hda", options=CampaignOptions(number_cap="1/3s")
    )
    enq.enqueue_file(
        as_stream(rows("96", range(8))),
        "hdb",
        options=CampaignOptions(account="second", number_cap="1/3s"),
    )
    workers = Workers(settings, tmp_path)
    try:
        workers.start(2, concurrency=8)
        wait_for(lambda: settled(ledger, "hda", "hdb"), timeout=45)
    finally:
        workers.stop()
    assert ledger.status("hda").states["originated"] == 8
    assert ledger.status("hdb").states["originated"] == 8
    # Exotel saw each number twice ...
    truth = sim.truth()
    assert sorted(truth["by_to"].values()) == [2] * 8, truth["by_to"]
    # ... and the two sent marks (the Redis clock, right before each POST) a period apart.
    sent: dict[str, list[int]] = defaultdict(list)
    for c in ("hda", "hdb"):
        for rec in ledger.iter_records(c):
            sent[rec["to"]].append(int(rec["sent_at"]))
    gaps = sorted(abs(b - a) for a, b in sent.values())
    assert gaps[0] >= 3000, gaps
    # The later call of each pair was held, not retried: one attempt each, no error left.
    for c in ("hda", "hdb"):
        for r in report_rows(ledger, c):
            assert (r["state"], r["attempts"], r["last_error"]) == ("originated", "1", "")
