"""One settings object, built once per process and passed in.

Nothing here reads the environment at import time: call :func:`load_settings`.
Secrets are ``SecretStr`` and never printed; a refused value is named by its
environment variable, and a secret's value is never echoed back.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ConfigError", "Settings", "caller_ids", "load_settings", "time_scaled"]

PositiveFloat = Annotated[float, Field(gt=0)]
#: The shortest API token accepted (each of API_TOKEN's comma-separated tokens).
MIN_API_TOKEN_CHARS = 16
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
#: The schemes of a Redis Cluster URL (LEDGER_REDIS_URL only; callq.store.connect).
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


class ConfigError(Exception):
    """A setting is missing or refused. The message names the environment variable."""


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class ExotelAccount(BaseModel):
    """One more Exotel account (``EXOTEL_ACCOUNTS``). Unset fields take the default
    account's value (subdomain, base URL, caller id, timeouts, rate limit, time zone)."""

    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(min_length=1)
    api_key: SecretStr
    api_token: SecretStr
    subdomain: str | None = None
    base_url: str | None = None
    caller_id: str | None = None
    rate_limit_calls: Annotated[int, Field(gt=0)] | None = None
    rate_limit_period_seconds: Annotated[float, Field(gt=0)] | None = None
    #: This account's cap on live calls, in slots (EXOTEL_MAX_LIVE_CALLS; at least 2).
    max_live_calls: Annotated[int, Field(ge=2)] | None = None
    #: Zone of this account's plain timestamps (an account in another region shows its own).
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)


class Settings(BaseSettings):
    """Every setting of the call queue. Field ``foo_bar`` is environment variable ``FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Redis: the broker, the ledger and the limiter.
    redis_url: str | None = None
    # The ledger, the limiter and everything of callq's own (not Celery's broker) on a Redis of
    # their own: any form REDIS_URL takes, or a Redis Cluster (redis+cluster://host:port,...).
    # Unset: REDIS_URL (callq.store.connect).
    ledger_redis_url: str | None = None
    key_prefix: str = "callq"
    # Sentinel (REDIS_URL=sentinel://...): the master's name and the Sentinels' own password.
    redis_sentinel_master: str = Field(default="mymaster", min_length=1)
    redis_sentinel_password: SecretStr = SecretStr("")
    # The sent mark must be on this many replicas before the POST (WAIT after mark_sent),
    # and each enqueued batch, cancel, pause or resume before it is reported done
    # (callq.intake.enqueue.confirming):
    # 'auto' = 1 while the master has a replica connected, none on a Redis without one.
    redis_wait_replicas: Literal["auto"] | Annotated[int, Field(ge=0, le=16)] = "auto"
    redis_wait_timeout_ms: Annotated[int, Field(ge=1, le=10000)] = 100

    # Exotel account and endpoint.
    exotel_account_sid: str = ""
    exotel_api_key: SecretStr = SecretStr("")
    exotel_api_token: SecretStr = SecretStr("")
    exotel_subdomain: str = "api.exotel.com"
    exotel_base_url: str | None = None
    exotel_caller_id: str = ""
    exotel_connect_timeout: PositiveFloat = 3.05
    exotel_read_timeout: PositiveFloat = 30.0
    exotel_origination_window_seconds: Annotated[float, Field(ge=0)] = 30.0
    exotel_timezone: str = "Asia/Kolkata"
    # The account's cap on concurrent calls, in slots (a connect-two-numbers call holds 2, a
    # flow call 1); unset = no cap. A slot is held from before the POST until the call's
    # terminal callback, a not-placed outcome, the backfill finding it ended, or its lease
    # (EXOTEL_LIVE_CALL_LEASE_SECONDS, by default the origination window + TimeOut +
    # TimeLimit, Exotel's maxima for those a row leaves unset). At least 2: under a cap of 1
    # no connect call could ever be granted.
    exotel_max_live_calls: Annotated[int, Field(ge=2)] | None = None
    exotel_live_call_lease_seconds: PositiveFloat | None = None
    # More accounts, by name: a campaign names one (``--account``); '' = the one above.
    exotel_accounts: dict[str, ExotelAccount] = Field(default_factory=dict)

    # Per-number cap: at most this many placed calls to one number (the callee) in any
    # rolling 24 h, over every campaign and account (unset: no cap). A campaign's own
    # ``--number-cap N/PERIOD`` replaces it for that campaign's calls.
    number_daily_cap: Annotated[int, Field(gt=0)] | None = None

    # Campaign defaults (a campaign may set its own). No window by default: Calls/connect
    # carries transactional calls, and a window is a campaign's choice (``--window``).
    calling_window: str = "always"
    calling_timezone: str = "Asia/Kolkata"

    # The global limiter.
    rate_limit_calls: Annotated[int, Field(gt=0)] = 200
    rate_limit_period_seconds: PositiveFloat = 60.0
    rate_limit_margin_seconds: Annotated[float, Field(gt=0)] = 1.0
    rate_limit_max_ahead_seconds: PositiveFloat = 1.0
    rate_limit_max_wait_seconds: PositiveFloat = 5.0
    # The feed: how far ahead parked calls are handed their permits.
    feed_lead_seconds: PositiveFloat = 0.5
    # Back-pressure: no permits are handed out while the oldest fed message in the `calls`
    # queue is already late for its slot (the workers' threads are behind).
    feed_backpressure: bool = True
    # Autoscaling (callq.store.demand): the time one Calls/connect request holds a worker
    # thread, beside the feed's lead; the threads an account needs are its rate times both.
    autoscale_request_seconds: PositiveFloat = 1.0

    # Retries of calls that were not placed.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    retry_backoff_base_seconds: PositiveFloat = 5.0
    retry_backoff_max_seconds: PositiveFloat = 300.0
    retry_jitter: bool = True
    rate_limited_pushback_seconds: PositiveFloat = 5.0

    # The per-account breaker.
    breaker_cooldown_seconds: PositiveFloat = 60.0
    breaker_max_cooldown_seconds: PositiveFloat = 900.0

    # Leases and the sweeper.
    lease_grace_seconds: PositiveFloat = 15.0
    sweep_interval_seconds: PositiveFloat = 2.0
    retry_overdue_seconds: PositiveFloat = 60.0
    queued_overdue_seconds: PositiveFloat = 21600.0
    in_doubt_policy: Literal["reconcile", "fail"] = "reconcile"
    reconcile_interval_seconds: PositiveFloat = 30.0

    # Callbacks.
    callback_url: str | None = None
    callback_token: SecretStr = SecretStr("")
    # call_status from Call Details for originated calls whose callback never came.
    call_status_backfill: bool = True
    call_status_backfill_margin_seconds: PositiveFloat = 900.0
    call_status_backfill_interval_seconds: PositiveFloat = 60.0

    # Events sent onward (callq.sweeping.events): EVENTS_URL, one or more receivers,
    # comma-separated; EVENTS_SECRET, one HMAC secret for each, in the same order.
    events_url: str = ""
    events_secret: SecretStr = SecretStr("")
    events_per_attempt: bool = False
    events_retry_seconds: PositiveFloat = 86400.0
    events_timeout_seconds: PositiveFloat = 5.0
    events_retain_seconds: PositiveFloat = 7 * 86400.0

    # The HTTP API (python -m callq.api). API_TOKEN: one or more bearer tokens, comma-separated
    # (several while a key is rotated); unset, the API refuses to start.
    api_token: SecretStr = SecretStr("")
    api_max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024

    # Celery.
    broker_key_prefix: str = ""
    worker_concurrency: Annotated[int, Field(gt=0)] = 16
    worker_heartbeat_file: str = ""
    log_format: Literal["text", "json"] = "text"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    visibility_timeout_seconds: Annotated[int, Field(gt=0)] = 7200

    @field_validator("exotel_base_url", "callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        return value.rstrip("/") if not parts.query else value

    @field_validator("exotel_subdomain")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", value):
            raise ValueError("must be a host name such as api.exotel.com")
        return value

    @field_validator("calling_window")
    @classmethod
    def _window(cls, value: str) -> str:
        from callq.campaign.window import Window

        return str(Window.parse(value))

    @field_validator("exotel_accounts")
    @classmethod
    def _accounts(cls, value: dict[str, ExotelAccount]) -> dict[str, ExotelAccount]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name == "default":
                raise ValueError(f"account name {name!r}: use 1-64 letters, digits, _ . - ")
        return value

    @field_validator("exotel_timezone", "calling_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX_RE.fullmatch(value):
            raise ValueError("use 1-32 letters, digits, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.retry_backoff_max_seconds < self.retry_backoff_base_seconds:
            raise ValueError(
                "RETRY_BACKOFF_MAX_SECONDS must not be below RETRY_BACKOFF_BASE_SECONDS"
            )
        if self.rate_limit_margin_seconds >= self.rate_limit_period_seconds:
            raise ValueError("RATE_LIMIT_MARGIN_SECONDS must be below RATE_LIMIT_PERIOD_SECONDS")
        if self.feed_lead_seconds > self.rate_limit_max_ahead_seconds:
            raise ValueError(
                "FEED_LEAD_SECONDS must not exceed RATE_LIMIT_MAX_AHEAD_SECONDS (a fed call "
                "holds a permit at most the horizon ahead)"
            )
        if self.rate_limit_max_wait_seconds < self.rate_limit_max_ahead_seconds:
            raise ValueError(
                "RATE_LIMIT_MAX_WAIT_SECONDS must not be below RATE_LIMIT_MAX_AHEAD_SECONDS"
            )
        self.event_urls()  # each an http(s) URL (raises naming EVENTS_URL)
        if self.events_retain_seconds < self.events_retry_seconds:
            raise ValueError(
                "EVENTS_RETAIN_SECONDS must not be below EVENTS_RETRY_SECONDS (an event is "
                "retried from the stream)"
            )
        longest = self.longest_attempt_seconds + self.retry_backoff_max_seconds
        if self.visibility_timeout_seconds <= longest:
            raise ValueError(
                f"VISIBILITY_TIMEOUT_SECONDS must exceed the longest attempt plus backoff "
                f"({longest:.0f} s)"
            )
        return self

    # Derived values -----------------------------------------------------------------------

    @property
    def exotel_api_base(self) -> str:
        """``EXOTEL_BASE_URL`` when set, else ``https://EXOTEL_SUBDOMAIN``."""
        return self.exotel_base_url or f"https://{self.exotel_subdomain}"

    @property
    def emission_interval_seconds(self) -> float:
        """Spacing between two permits: (period + margin) / calls."""
        return (self.rate_limit_period_seconds + self.rate_limit_margin_seconds) / (
            self.rate_limit_calls
        )

    @property
    def longest_attempt_seconds(self) -> float:
        """The longest one attempt may hold a call: limiter wait plus connect and read."""
        return (
            self.rate_limit_max_wait_seconds
            + self.exotel_connect_timeout
            + self.exotel_read_timeout
        )

    @property
    def has_exotel_credentials(self) -> bool:
        return bool(
            self.exotel_account_sid
            and self.exotel_api_key.get_secret_value()
            and self.exotel_api_token.get_secret_value()
        )

    def account_names(self) -> list[str]:
        """'default' (the EXOTEL_* account) and every name in EXOTEL_ACCOUNTS."""
        return ["default", *self.exotel_accounts]

    def for_account(self, name: str) -> Settings:
        """These settings with the named account's credentials, endpoint and rate limit.
        '' and 'default' are the EXOTEL_* account. Raises ConfigError for an unknown name."""
        if name in ("", "default"):
            return self
        acct = self.exotel_accounts.get(name)
        if acct is None:
            known = ", ".join(self.account_names())
            raise ConfigError(f"EXOTEL_ACCOUNTS has no account {name!r} (known: {known})")
        update: dict[str, Any] = {
            "exotel_account_sid": acct.account_sid,
            "exotel_api_key": acct.api_key,
            "exotel_api_token": acct.api_token,
            "exotel_accounts": {},
        }
        for src, dst in (
            ("subdomain", "exotel_subdomain"),
            ("base_url", "exotel_base_url"),
            ("caller_id", "exotel_caller_id"),
            ("rate_limit_calls", "rate_limit_calls"),
            ("rate_limit_period_seconds", "rate_limit_period_seconds"),
            ("max_live_calls", "exotel_max_live_calls"),
            ("timezone", "exotel_timezone"),
        ):
            value = getattr(acct, src)
            if value is not None:
                update[dst] = value
        return self.model_copy(update=update)

    def require_redis_url(self) -> str:
        """The broker's URL (``REDIS_URL``). A Redis Cluster URL is refused: kombu has no
        Cluster transport, so the broker stays on one Redis or Sentinel."""
        if not self.redis_url:
            raise ConfigError("REDIS_URL is not set (for example redis://localhost:6379/0)")
        if self.redis_url.strip().lower().startswith(CLUSTER_SCHEMES):
            raise ConfigError(
                "REDIS_URL: a Redis Cluster cannot hold Celery's broker (kombu has no Cluster "
                "transport); keep REDIS_URL on one Redis or a Sentinel master and put the "
                "ledger on the Cluster with LEDGER_REDIS_URL=redis+cluster://host:port,..."
            )
        return self.redis_url

    def require_ledger_url(self) -> str:
        """The ledger's URL: ``LEDGER_REDIS_URL``, else ``REDIS_URL``."""
        if self.ledger_redis_url and self.ledger_redis_url.strip():
            return self.ledger_redis_url.strip()
        return self.require_redis_url()

    @property
    def ledger_apart(self) -> bool:
        """The ledger is on another Redis than the broker (``LEDGER_REDIS_URL`` set, and not
        to ``REDIS_URL`` itself): no script may touch the broker's keys, so the task messages
        a script hands to the queue are pushed by the caller, on the broker's client."""
        own = (self.ledger_redis_url or "").strip()
        return bool(own) and own != (self.redis_url or "").strip()

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.redis_url) and str(self.redis_url).strip().lower().startswith(
            "sentinel://"
        )

    @property
    def wait_replicas(self) -> int:
        """Replicas that must hold the sent mark before the POST (``REDIS_WAIT_REPLICAS``).
        'auto' is 1, but only while the master has a replica connected (see
        :attr:`wait_strict`); 0 = no WAIT."""
        return 1 if self.redis_wait_replicas == "auto" else self.redis_wait_replicas

    @property
    def wait_strict(self) -> bool:
        """A number in ``REDIS_WAIT_REPLICAS``: WAIT for that many even when fewer replicas
        are connected (no call goes out until they are back). 'auto': WAIT for the replicas
        the master has, so a master left alone after a failover still dials."""
        return self.redis_wait_replicas != "auto"

    @property
    def failover_hold_seconds(self) -> float:
        """How long every account's limiter stays shut after a new Redis master is seen: one
        period, plus the furthest a permit granted by the old master may still be used (the
        longest wait for a permit) and the margin, for the slowest account."""
        return max(
            a.rate_limit_period_seconds
            + a.rate_limit_max_wait_seconds
            + a.rate_limit_margin_seconds
            for a in (self.for_account(n) for n in self.account_names())
        )

    def require_exotel(self) -> None:
        missing = [
            name
            for name, value in (
                ("EXOTEL_ACCOUNT_SID", self.exotel_account_sid),
                ("EXOTEL_API_KEY", self.exotel_api_key.get_secret_value()),
                ("EXOTEL_API_TOKEN", self.exotel_api_token.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set: the worker cannot dial without them")

    def api_tokens(self) -> list[bytes]:
        """The API's bearer tokens (``API_TOKEN``, comma-separated), as bytes. Raises
        :class:`ConfigError` when there is none, or one is too short to be a secret."""
        raw = self.api_token.get_secret_value()
        tokens = [t.strip() for t in raw.split(",") if t.strip()]
        if not tokens:
            raise ConfigError(
                "API_TOKEN is not set: the HTTP API refuses to serve campaigns without a "
                "token (give one or more long random strings, comma-separated)"
            )
        short = [i + 1 for i, t in enumerate(tokens) if len(t) < MIN_API_TOKEN_CHARS]
        if short:
            which = ", ".join(str(i) for i in short)
            raise ConfigError(
                f"API_TOKEN: token(s) number {which} are shorter than {MIN_API_TOKEN_CHARS} "
                "characters: use long random strings"
            )
        return [t.encode("utf-8") for t in tokens]

    def event_urls(self) -> list[str]:
        """The receivers of events (``EVENTS_URL``, comma-separated); [] when none, and then
        no transition writes an event. Raises ValueError naming EVENTS_URL for a URL that is
        not http(s). Every process that moves calls reads it; only the worker, which sends the
        events, needs their secrets (:meth:`event_sinks`)."""
        urls = [u.strip() for u in self.events_url.split(",") if u.strip()]
        for i, url in enumerate(urls, 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                # Not echoed: a URL may carry credentials.
                raise ValueError(f"EVENTS_URL: URL number {i} is not an http(s) URL")
        return urls

    def event_sinks(self) -> list[tuple[str, SecretStr]]:
        """The receivers of events: (URL, its HMAC secret) each, from ``EVENTS_URL`` and
        ``EVENTS_SECRET`` (comma-separated, in the same order). Raises :class:`ConfigError`
        naming EVENTS_SECRET when the counts differ or a secret is short; no secret is ever
        printed."""
        urls = self.event_urls()
        if not urls:
            return []
        secrets = [s.strip() for s in self.events_secret.get_secret_value().split(",")]
        secrets = [s for s in secrets if s]
        if len(secrets) != len(urls):
            raise ConfigError(
                f"EVENTS_SECRET must hold one secret per EVENTS_URL, comma-separated "
                f"({len(urls)} URLs, {len(secrets)} secrets)"
            )
        short = [i + 1 for i, s in enumerate(secrets) if len(s) < MIN_API_TOKEN_CHARS]
        if short:
            raise ConfigError(
                f"EVENTS_SECRET: secret(s) number {', '.join(map(str, short))} are shorter "
                f"than {MIN_API_TOKEN_CHARS} characters: use long random strings"
            )
        return [(u, SecretStr(s)) for u, s in zip(urls, secrets, strict=True)]

    def callback_target(self) -> str | None:
        """``CALLBACK_URL`` with ``token=CALLBACK_TOKEN`` added to its query, or None."""
        if not self.callback_url:
            return None
        token = self.callback_token.get_secret_value()
        if not token:
            return self.callback_url
        sep = "&" if urlsplit(self.callback_url).query else "?"
        from urllib.parse import quote

        return f"{self.callback_url}{sep}token={quote(token, safe='')}"

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for a child process (holds secrets)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif name == "exotel_accounts":
                value = json.dumps(
                    {
                        n: a.model_dump(mode="json", exclude_none=True)
                        | {
                            "api_key": a.api_key.get_secret_value(),
                            "api_token": a.api_token.get_secret_value(),
                        }
                        for n, a in self.exotel_accounts.items()
                    }
                )
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[name.upper()] = str(value)
        return env


_SECRET_FIELDS = {
    "redis_url",
    "ledger_redis_url",
    "redis_sentinel_password",
    "exotel_api_key",
    "exotel_api_token",
    "callback_token",
    "exotel_accounts",
    "api_token",
    "events_secret",
}


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[0].upper() if loc else "settings"
        if len(loc) > 1:
            name += "[" + "].[".join(loc[1:]) + "]"  # EXOTEL_ACCOUNTS[north].[api_token]
        msg = err.get("msg", "invalid")
        if loc and loc[0] not in _SECRET_FIELDS and "input" in err and err.get("type") != "missing":
            lines.append(f"{name}: {msg} (got {err['input']!r})")
        else:
            lines.append(f"{name}: {msg}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def caller_ids(settings: Settings) -> dict[str, str]:
    """Each account's default CallerId (EXOTEL_CALLER_ID, or its own in EXOTEL_ACCOUNTS)."""
    return {n: settings.for_account(n).exotel_caller_id for n in settings.account_names()}


#: Floors of the time-scaled durations that are about this machine, not about Exotel.
MIN_SCALED_MARGIN_SECONDS = 0.1
MIN_SCALED_READ_TIMEOUT_SECONDS = 2.0
MIN_SCALED_TICK_SECONDS = 0.25
MIN_SCALED_GUARD_SECONDS = 2.0


def time_scaled(base: Settings, speed: float) -> dict[str, Any]:
    """Overrides that run ``base`` ``speed`` times faster, for the demo, tests and benches.

    Every duration that models Exotel's clock or the limit's period is divided by ``speed``:
    the period, the retry backoff, the origination window, reconcile's first look, the
    breaker's cool-downs. Those about this machine are not, or keep a floor: the limiter's
    margin (it covers the jitter between a permit and the request's arrival, which does not
    shrink with the speed), the horizon and the feed's lead (how long a thread may hold a
    permit), the connect and read timeouts (a loaded laptop must not turn every reply into an
    in-doubt call), the sweeper's tick, the overdue guard and the lease grace. ``speed`` 1
    returns no overrides.
    """
    if not speed > 0:
        raise ValueError("speed must be positive")
    if speed == 1:
        return {}
    k = 1.0 / speed
    floor = MIN_SCALED_GUARD_SECONDS
    period = base.rate_limit_period_seconds * k
    return {
        "rate_limit_period_seconds": period,
        "rate_limit_margin_seconds": max(
            base.rate_limit_margin_seconds * k, min(MIN_SCALED_MARGIN_SECONDS, period / 4)
        ),
        "rate_limit_max_wait_seconds": max(
            base.rate_limit_max_wait_seconds * k, base.rate_limit_max_ahead_seconds
        ),
        "rate_limited_pushback_seconds": base.rate_limited_pushback_seconds * k,
        "exotel_origination_window_seconds": base.exotel_origination_window_seconds * k,
        "exotel_read_timeout": max(base.exotel_read_timeout * k, MIN_SCALED_READ_TIMEOUT_SECONDS),
        "retry_backoff_base_seconds": base.retry_backoff_base_seconds * k,
        "retry_backoff_max_seconds": base.retry_backoff_max_seconds * k,
        "reconcile_interval_seconds": base.reconcile_interval_seconds * k,
        "breaker_cooldown_seconds": base.breaker_cooldown_seconds * k,
        "breaker_max_cooldown_seconds": base.breaker_max_cooldown_seconds * k,
        "lease_grace_seconds": max(base.lease_grace_seconds * k, floor),
        "retry_overdue_seconds": max(base.retry_overdue_seconds * k, floor),
        "queued_overdue_seconds": max(base.queued_overdue_seconds * k, floor),
        "sweep_interval_seconds": max(base.sweep_interval_seconds * k, MIN_SCALED_TICK_SECONDS),
    }


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``.env``), plus explicit overrides.

    Raises :class:`ConfigError` naming each refused variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
