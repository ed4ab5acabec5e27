"""Many accounts at once, through real workers and the simulator: every account at its own
limit (0 x 429, no window over), each campaign's calls on its own account's SID.

The same path at 10, 50 and 200 accounts, with the rates and what they cost, is
``bench/accounts.py`` (docs/benchmarks.md, section 8).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from callq.campaign.controls import CampaignOptions
from callq.intake.enqueue import Enqueuer
from callq.settings import ExotelAccount, Settings
from callq.store.ledger import Ledger
from tests.campaigns import mobile, verdict
from tests.conftest import SIM_KEY, SIM_SID, SIM_TOKEN, Workers, make_settings, wait_for

ACCOUNTS = 20
LIMIT, PERIOD = 2, 2.0  # per account: 1/s each, 20/s in all
CALLS = 6  # per account: three periods at its limit


def sid(i: int) -> str:
    return f"many-{i:02d}"


@pytest.fixture
def sim() -> Iterator[Any]:
    from simulator import Account, SimConfig, Simulator

    accounts = [
        Account(SIM_SID, SIM_KEY, SIM_TOKEN, rate_limit=LIMIT, period=PERIOD),
        *(
            Account(sid(i), f"key-{i}", f"token-{i}", rate_limit=LIMIT, period=PERIOD)
            for i in range(ACCOUNTS)
        ),
    ]
    with Simulator(SimConfig(accounts=accounts, latency=False, callbacks=False, seed=3)) as s:
        yield s


@pytest.fixture
def settings(redis_url: str, prefix: str, sim: Any) -> Settings:
    """The shipped defaults at the test speed, with 20 more accounts of 2 per 2 s each."""
    return make_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        broker_key_prefix=f"{prefix}.",
        exotel_account_sid=SIM_SID,
        exotel_api_key=SIM_KEY,
        exotel_api_token=SIM_TOKEN,
        exotel_base_url=sim.url,
        exotel_caller_id="08030752400",
        rate_limit_calls=LIMIT,
        rate_limit_period_seconds=PERIOD,
        exotel_accounts={
            f"acct{i}": ExotelAccount(
                account_sid=sid(i),
                api_key=SecretStr(f"key-{i}"),
                api_token=SecretStr(f"token-{i}"),
            )
            for i in range(ACCOUNTS)
        },
    )


def rows(account: int) -> bytes:
    lines = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    lines.extend(
        f"{mobile('98', account * 100 + k)},{mobile('97', account * 100 + k)},08030752400,"
        f"o{k},600,30"
        for k in range(CALLS)
    )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_given_twenty_accounts_at_once_when_their_campaigns_run_then_each_holds_its_own_limit(
    settings: Settings, sim: Any, workers: Workers, ledger: Ledger
) -> None:
    enq = Enqueuer(settings)
    for i in range(ACCOUNTS):
        res = enq.enqueue_file(
            io.BytesIO(rows(i)), f"many{i}", options=CampaignOptions(account=f"acct{i}")
        )
        assert res.accepted == CALLS
    workers.start(2)
    total = ACCOUNTS * CALLS
    wait_for(
        lambda: sim.counts()["originated"] >= total,
        timeout=60,
        message=lambda: f"{sim.counts()} {workers.output()[-2000:]}",
    )
    truth = sim.truth()
    assert truth["rate_limited"] == 0, truth["rate_limited_by_account"]
    for i in range(ACCOUNTS):
        assert truth["max_in_window"][sid(i)] <= LIMIT, (sid(i), truth["max_in_window"])
        assert truth["rate_limited_by_account"][sid(i)] == 0
    # The default account had no campaign: nothing went out on it.
    assert truth["max_in_window"][SIM_SID] == 0
    account_of = {c["custom_field"]: c["account_sid"] for c in truth["calls"]}
    for i in range(ACCOUNTS):
        v = verdict(ledger, f"many{i}", truth)
        assert v["states"] == {"originated": CALLS}
        assert v["duplicates"] == [] and v["wrong_sid"] == []
        # Every call of the campaign went out on its own account, none on another's.
        assert {account_of[r["request_id"]] for r in v["records"]} == {sid(i)}
