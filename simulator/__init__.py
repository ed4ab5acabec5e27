"""An Exotel voice API simulator: a real HTTP server for tests and demos.

    with Simulator(SimConfig(time_scale=0.01)) as sim:
        requests.post(f"{sim.url}/v1/Accounts/sim-account/Calls/connect.json",
                      data={"From": ..., "To": ..., "CallerId": ...}, auth=("sim-key", "sim-token"))
        sim.truth()["originated"]

Exotel paths (``{sid}`` must be a configured account, else 404; HTTP Basic auth with that
account's key and token, else 401):

* ``POST /v1/Accounts/{sid}/Calls/connect[.json]``: XML ``<TwilioResponse>`` or JSON reply in
  the shapes of Exotel's pages. Per request: auth, then the rate-limit window, then a scripted
  or random fault, then validation (400 ``Invalid Call Parameters: ...``), then origination.
  Latency follows the seed profile (mean ~480 ms, p95 ~1.1 s, p99 ~2.5 s) times ``time_scale``.
* ``GET /v1/Accounts/{sid}/Calls/{CallSid}[.json]`` (``?details=true`` adds ``Details``).
* ``GET /v1/Accounts/{sid}/Calls[.json]``: filters ``To``/``From`` (up to 5 each), ``Sid``,
  ``Status``, ``Direction``, ``DateCreated=gte:...;lte:...``; ``PageSize`` (1-100, default 50),
  ``SortBy=DateCreated:asc|desc`` (default desc), ``After``/``Before`` cursors. Only calls that
  have ended are listed. ``max_page_size`` caps every page (a search then spans pages).

Rate limit: a strict sliding window per account over every authenticated request (connect and
Call Details alike). A request is refused with 429 when the window already holds
``rate_limit`` arrivals; the refused arrival is still counted, and ``max_in_window`` counts
every arrival (so a client that never saw a 429 has ``max_in_window <= rate_limit``). Each
account has its own limit and window (``Account.rate_limit``, ``Account.period``; any number
of accounts, keyed by the sid in the URL); ``truth()`` gives ``max_in_window`` and
``rate_limited_by_account`` per sid, and ``rate_limited`` in all.

Faults: ``500``, ``504``, ``429`` (not placed), ``slow_placed`` (placed, reply after
``slow_seconds``, unscaled), ``reset_before`` (TCP RST, not placed), ``reset_after`` (placed,
then RST), ``proxy_504`` (placed, but a proxy in front answers 504 with an HTML page, not
Exotel's RestException), ``ok``. Scripts (``script(key, [...])``) match CustomField, then To,
then From, and win over the random ``p_*`` draws. Faults come before validation, and a fault
that places a call does so only if the request is valid.

StatusCallbacks are posted when a call ends: the terminal payload of Exotel's page when the
request had ``StatusCallbackEvents[0]=terminal``, else the four basic fields (CallSid, Status,
RecordingUrl, DateUpdated). A call connected to a flow always gets the four basic fields, so
its callback has no CustomField (EXOTEL.md). Content type:
the request's ``StatusCallbackContentType``, else ``SimConfig.default_callback_content_type``
(multipart/form-data, Exotel's documented default); an unknown type is sent url-encoded.
Failed posts (refused or non-2xx) are retried 5 times with backoff (1, 2, 4, 8, 16 s, scaled).

Timestamps are wall-clock in ``SimConfig.timezone`` (Asia/Kolkata). Durations in replies and
callbacks are simulated seconds (not scaled); a call really lasts ``(ring + talk) *
time_scale``. For a call connected to a flow (``Url``), ``To`` is shown as the ExoPhone, as
Exotel does, and ``truth()["by_to"]`` counts it there (``by_from`` counts the customer).

Calls we did not place are listed too: ``add_call()`` (``POST /_sim/calls``) adds one that has
already ended, with its ``Direction`` (``inbound``: the customer calling an ExoPhone;
``outbound-api``: another system's call on the account) and no CustomField. Listings sort by
DateCreated. ``truth()["calls"]`` holds only the calls placed through Calls/connect; added ones
are in ``truth()["injected"]``.

Control (no auth): ``GET /_sim/truth``, ``GET /_sim/arrivals`` (every request's arrival time),
``GET|POST /_sim/config``, ``POST /_sim/script``, ``POST /_sim/reset``, ``POST /_sim/calls``,
``GET /_sim/health``.
"""

from simulator.config import FAULTS, Account, SimConfig
from simulator.latency import latency_mean, latency_quantile, sample_latency
from simulator.server import Simulator

__all__ = [
    "FAULTS",
    "Account",
    "SimConfig",
    "Simulator",
    "latency_mean",
    "latency_quantile",
    "sample_latency",
]
