"""The real demand for worker threads, for autoscalers: read from Redis, never from the calls.

Since parking, a campaign's backlog waits in its parked set and reaches the broker's `calls`
list only with a permit (callq.sweeping.feed), so `LLEN calls` stays at about half a second
of calls however big the campaign: it cannot drive an autoscaler. This reads what can be
dialled now instead, and turns it into the threads that dialling needs.

* **Ready calls**, per account: the parked calls of every campaign that could be fed now (not
  paused, not cancelled, past send_at, inside its calling window, before end_at, on an account
  this deployment knows whose breaker is closed). A campaign held by its window or send_at,
  or paused, counts under ``held`` instead.
* **Busy**: messages waiting in `calls` and `calls.priority`, and messages a worker holds
  (kombu's ``unacked``: the task running, or a retry waiting for its countdown).
* **Threads needed**: an account cannot use more threads than its rate allows, so each
  account needs ``min(ready, rate x hold)``, where ``hold`` is how long a fed call holds a
  thread: the feed's lead (``FEED_LEAD_SECONDS``, the call sleeps until its permit's slot)
  plus one request (``AUTOSCALE_REQUEST_SECONDS``). The total is the larger of the accounts'
  sum and what is busy right now (so a slow Exotel, which keeps more threads busy than the
  estimate, scales up too), the busy part bounded by every account's rate times its longest
  attempt (a retry storm's countdowns hold no thread).
* **Workers needed**: ``ceil(threads / WORKER_CONCURRENCY)``.

Cost: two pipelined round trips, O(accounts + campaigns with parked calls): the campaigns come
from the wake set (every campaign with parked calls has an entry there, except a paused one
without end_at, which is held anyway), and each costs one HGETALL of its controls, one ZCARD
and one ZCOUNT (its ready band: a call held in a callee zone's band counts under ``held``).
Nothing here writes, and nothing on a call's path calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from callq.campaign import zones
from callq.campaign.controls import Controls
from callq.settings import Settings
from callq.store.keys import Keys

#: kombu's Redis transport keeps the messages delivered and not yet acked in this hash.
UNACKED = "unacked"
#: At most this many campaigns are read in one pass (the wake set's first ones).
MAX_CAMPAIGNS = 20_000


@dataclass(frozen=True)
class AccountDemand:
    account: str
    ready: int  # parked calls that could be fed now
    rate: float  # permits per second the account's limiter grants
    threads: float  # min(ready, rate x hold)


@dataclass(frozen=True)
class Demand:
    accounts: tuple[AccountDemand, ...] = ()
    held: int = 0  # parked calls that cannot be dialled now (window, send_at, pause, breaker)
    queued: int = 0  # messages in `calls` and `calls.priority`
    reserved: int = 0  # messages a worker holds (running, or a retry's countdown)
    threads: float = 0.0  # worker threads needed
    workers: int = 0  # ceil(threads / WORKER_CONCURRENCY)
    campaigns: int = 0  # campaigns with parked calls looked at
    by_campaign: dict[str, int] = field(default_factory=dict)  # ready calls per campaign

    @property
    def ready(self) -> int:
        return sum(a.ready for a in self.accounts)


def hold_seconds(settings: Settings) -> float:
    """How long a fed call holds a worker thread: the lead, then one request."""
    return settings.feed_lead_seconds + settings.autoscale_request_seconds


def worst_hold_seconds(settings: Settings) -> float:
    """The longest a fed call holds a thread: the lead, then a request that times out."""
    return (
        settings.feed_lead_seconds + settings.exotel_connect_timeout + settings.exotel_read_timeout
    )


def account_rate(settings: Settings) -> float:
    """Permits per second (the limiter's spacing: period plus margin over the calls)."""
    return 1.0 / settings.emission_interval_seconds


def read_demand(
    client: redis.Redis,
    settings: Settings,
    queues: Sequence[str],
    *,
    now: float | None = None,
    broker_client: redis.Redis | None = None,
) -> Demand:
    """The demand now. ``queues``: the broker's lists the workers consume (`calls`,
    `calls.priority`: callq.transport.queues, a layer above this one); ``now``: epoch seconds
    for the calling windows, the Redis clock when None; ``broker_client``: the broker's client when
    the ledger is apart from it (LEDGER_REDIS_URL), where the lists and ``unacked`` are read.
    Raises redis.RedisError when Redis does not answer."""
    keys = Keys.for_settings(settings)
    broker = settings.broker_key_prefix
    accounts = settings.account_names()

    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.wake(), 0, MAX_CAMPAIGNS - 1)
    pipe.time()
    for name in accounts:
        pipe.hget(keys.breaker(name), "until")
    apart = broker_client.pipeline(transaction=False) if broker_client is not None else pipe
    apart.hlen(f"{broker}{UNACKED}")
    for queue in queues:
        apart.llen(f"{broker}{queue}")
    wake, (sec, usec), *rest = pipe.execute()
    if apart is not pipe:
        rest += apart.execute()
    untils = rest[: len(accounts)]
    reserved, *lengths = rest[len(accounts) :]
    queued = sum(int(n) for n in lengths)
    now_ms = int(sec) * 1000 + int(usec) // 1000
    clock = now_ms / 1000 if now is None else now
    open_breaker = {
        name for name, until in zip(accounts, untils, strict=True) if until and now_ms < int(until)
    }
    campaigns = [str(c) for c in wake]

    pipe = client.pipeline(transaction=False)
    for c in campaigns:
        pipe.hgetall(keys.campaign_meta(c))
        pipe.zcard(keys.campaign_parked(c))
        # Those the feed may take: not those held for their callee zone's window (a band).
        pipe.zcount(keys.campaign_parked(c), "-inf", f"({zones.SPAN}")
    values = pipe.execute()

    ready = dict.fromkeys(accounts, 0)
    by_campaign: dict[str, int] = {}
    held = 0
    for i, campaign in enumerate(campaigns):
        meta, parked = values[3 * i], int(values[3 * i + 1] or 0)
        if not parked:
            continue
        account = _feedable(campaign, meta, settings, clock, open_breaker)
        banded = parked - int(values[3 * i + 2] or 0)
        held += banded
        if account is None:
            held += parked - banded
        elif parked > banded:
            ready[account] += parked - banded
            by_campaign[campaign] = parked - banded

    hold, worst = hold_seconds(settings), worst_hold_seconds(settings)
    per_account = []
    busy_bound = 0.0
    for name in accounts:
        rate = account_rate(settings.for_account(name))
        busy_bound += rate * worst
        n = ready[name]
        per_account.append(AccountDemand(name, n, rate, min(float(n), rate * hold)))
    busy = queued + int(reserved)
    threads = max(sum(a.threads for a in per_account), min(float(busy), busy_bound))
    return Demand(
        accounts=tuple(per_account),
        held=held,
        queued=queued,
        reserved=int(reserved),
        threads=threads,
        workers=math.ceil(round(threads, 6) / settings.worker_concurrency),
        campaigns=len(campaigns),
        by_campaign=by_campaign,
    )


def _feedable(
    campaign: str,
    meta: dict[bytes | str, bytes | str],
    settings: Settings,
    now: float,
    open_breaker: set[str],
) -> str | None:
    """The account whose permits a campaign's parked calls can use now, or None when they
    are held (or about to be cancelled or expired by their judge)."""
    text = {_s(k): _s(v) for k, v in meta.items()}
    try:
        ctl = Controls.from_meta(
            campaign,
            text,
            default_window=settings.calling_window,
            default_timezone=settings.calling_timezone,
        )
    except (ValueError, KeyError):
        return None  # unreadable controls: its judge says why, and it waits
    if ctl.paused or ctl.cancelled or ctl.gate(now).kind != "go":
        return None
    account = ctl.account or "default"
    if account not in settings.account_names() or account in open_breaker:
        return None
    return account


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
