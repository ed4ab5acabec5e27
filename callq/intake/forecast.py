"""The forecast of a campaign, before it starts (a file and its controls) or while it runs
(its counters): the inputs read from the settings and Redis, the model in
callq.campaign.forecast. Nothing here writes.

The account's other open campaigns come from the wake set (every campaign with parked calls
has an entry there; see callq.store.demand, which reads it the same way): one HGETALL of the
controls and one HMGET of the counters each, in two pipelined round trips.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import redis

from callq.campaign.controls import CampaignOptions, Controls
from callq.campaign.forecast import Forecast, Other, Plan, forecast, observed_mix
from callq.intake.csvread import read_rows
from callq.intake.enqueue import check_campaign, options_meta
from callq.intake.request import CallRequest
from callq.settings import Settings
from callq.store.connect import redis_for
from callq.store.demand import MAX_CAMPAIGNS, account_rate
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.store.slots import CONNECT_SLOTS, FLOW_SLOTS

#: The mean call length assumed for the live-call cap when none is stated (seconds).
DEFAULT_CALL_SECONDS = 60.0


@dataclass(frozen=True)
class FileCount:
    calls: int  # rows that would be enqueued (valid, the same parties once)
    rejected: int
    flow: int  # of the calls, flow calls (Url: 1 live slot)

    @property
    def slots_per_call(self) -> float:
        if not self.calls:
            return float(CONNECT_SLOTS)
        return (self.flow * FLOW_SLOTS + (self.calls - self.flow) * CONNECT_SLOTS) / self.calls


def count_file(source: str | BinaryIO, settings: Settings) -> FileCount:
    """The calls a campaign file holds, counted as ``enqueue`` would keep them (the first of
    the same parties). Raises OSError when the file cannot be read."""
    seen: set[tuple[str, ...]] = set()
    rejected = flow = 0
    caller = settings.exotel_caller_id or None
    for item in read_rows(source, default_caller_id=caller):
        if not isinstance(item, CallRequest):
            rejected += item.__class__.__name__ == "RowError"
            continue
        key = (item.from_,) if item.url else (item.from_, item.to or "")
        if key in seen:
            continue
        seen.add(key)
        flow += bool(item.url)
    return FileCount(len(seen), rejected, flow)


def _text(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    def s(v: bytes | str) -> str:
        return v.decode() if isinstance(v, bytes) else v

    return {s(k): s(v) for k, v in raw.items()}


def _controls(campaign: str, meta: Mapping[str, str], settings: Settings) -> Controls:
    return Controls.from_meta(
        campaign,
        meta,
        default_window=settings.calling_window,
        default_timezone=settings.calling_timezone,
    )


def account_campaigns(
    client: redis.Redis, settings: Settings, account: str
) -> list[tuple[str, float, int]]:
    """(campaign, weight, calls waiting) of each open campaign of ``account`` (not paused,
    not cancelled, with parked calls)."""
    keys = Keys.for_settings(settings)
    campaigns = [str(c) for c in client.zrange(keys.wake(), 0, MAX_CAMPAIGNS - 1)]
    pipe = client.pipeline(transaction=False)
    for c in campaigns:
        pipe.hgetall(keys.campaign_meta(c))
        pipe.hmget(keys.campaign_counts(c), ["queued", "retrying"])
    values = pipe.execute()
    out = []
    for i, campaign in enumerate(campaigns):
        try:
            ctl = _controls(campaign, _text(values[2 * i]), settings)
        except (ValueError, KeyError):
            continue
        if ctl.paused or ctl.cancelled or (ctl.account or "default") != account:
            continue
        waiting = sum(int(v or 0) for v in values[2 * i + 1])
        out.append((campaign, ctl.weight, waiting))
    return out


def _plan(
    ctl: Controls,
    calls: int,
    settings: Settings,
    others: tuple[Other, ...],
    *,
    mix: Mapping[str, float],
    call_seconds: float,
    slots_per_call: float,
    now: float,
) -> Plan:
    acct = settings.for_account(ctl.account)
    return Plan(
        calls=calls,
        now=now,
        rate=account_rate(acct),
        weight=ctl.weight,
        others=others,
        live_cap=acct.exotel_max_live_calls,
        slots_per_call=slots_per_call,
        call_seconds=call_seconds,
        window=ctl.window,
        timezone=ctl.timezone,
        send_at=ctl.send_at,
        end_at=ctl.end_at,
        redial_on=ctl.redial_on,
        redials=ctl.redials,
        redial_interval=ctl.redial_interval,
        redial_backoff=ctl.redial_backoff,
        mix=mix,
    )


def forecast_file(
    source: str | BinaryIO,
    options: CampaignOptions,
    settings: Settings,
    *,
    mix: Mapping[str, float] | None = None,
    campaign: str | None = None,
    call_seconds: float = DEFAULT_CALL_SECONDS,
    now: float | None = None,
) -> tuple[Forecast, FileCount]:
    """The forecast of a campaign file enqueued now with ``options`` (``mix``: the call_status
    mix expected, for the redials). The account's open campaigns share its rate with it;
    ``campaign``, when the file's campaign exists already: its stored controls are the base
    the options change, and it is not counted among the others. Raises ValueError naming a
    bad option, ConfigError for an unknown account, OSError."""
    fields = options_meta(options, settings)
    client = redis_for(settings)
    meta: dict[str, str] = {}
    if campaign is not None:
        key = Keys.for_settings(settings).campaign_meta(check_campaign(campaign))
        meta = _text(client.hgetall(key))
    ctl = _controls(campaign or "forecast", meta | fields, settings)  # stored, then given
    settings.for_account(ctl.account)  # an unknown account: ConfigError before the file
    count = count_file(source, settings)
    rows = account_campaigns(client, settings, ctl.account or "default")
    others = tuple(Other(c, w, n) for c, w, n in rows if c != campaign and n > 0)
    plan = _plan(
        ctl,
        count.calls,
        settings,
        others,
        mix=mix or {},
        call_seconds=call_seconds,
        slots_per_call=count.slots_per_call,
        now=time.time() if now is None else now,
    )
    return forecast(plan), count


def forecast_campaign(
    campaign: str,
    settings: Settings,
    *,
    mix: Mapping[str, float] | None = None,
    call_seconds: float = DEFAULT_CALL_SECONDS,
    slots_per_call: float = float(CONNECT_SLOTS),
    now: float | None = None,
    ledger: Ledger | None = None,
) -> Forecast | None:
    """The forecast of a running campaign from what it has left: its queued and retrying
    calls; the redials from its call_status counts so far (or ``mix``). None when there is no
    such campaign. Raises ConfigError when its account is unknown to these settings."""
    ledger = ledger or Ledger(redis_for(settings), Keys.for_settings(settings))
    status = ledger.status(check_campaign(campaign))
    if status.total == 0:
        return None
    ctl = _controls(campaign, ledger.meta(campaign), settings)
    waiting = status.states.get("queued", 0) + status.states.get("retrying", 0)
    left = 0 if ctl.cancelled else waiting
    rows = account_campaigns(ledger.redis, settings, ctl.account or "default")
    others = tuple(Other(c, w, n) for c, w, n in rows if c != campaign and n > 0)
    plan = _plan(
        ctl,
        left,
        settings,
        others,
        mix=mix if mix else observed_mix(status.call_status),
        call_seconds=call_seconds,
        slots_per_call=slots_per_call,
        now=time.time() if now is None else now,
    )
    return forecast(plan)
