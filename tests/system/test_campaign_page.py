"""The live campaign page in a real headless Chromium (Debian's ``chromium``, driven by
Playwright; no browser download): a campaign posted through the API runs through real Celery
workers and the simulator, the page logs in with the token, its numbers are read against
``status --json``, and pause, resume and cancel are clicked with their confirmations.

``CALLQ_PAGE_SCREENSHOT=docs/img/campaign-page.png`` also saves a screenshot of the running
campaign there (how the one in docs/operations.md was taken)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from callq.api.app import create_app
from callq.settings import Settings
from tests.campaigns import AGENT, mobile
from tests.conftest import ServerThread, Workers, callback_receiver, wait_for

pytestmark = pytest.mark.slow

TOKEN = "page-system-token-19c7d2e4"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
N = 150
#: The page's figures, read from its DOM.
READ_PAGE = """() => {
  const num = (sel) => Object.fromEntries([...document.querySelectorAll(sel)].map(
    (td) => [Object.values(td.dataset)[0], Number(td.textContent)]));
  return {
    total: Number(document.getElementById("total").textContent),
    states: num("#states td[data-state]"),
    call_status: num("#call-status td[data-status]"),
    badge: document.getElementById("badge").textContent,
    held: document.getElementById("held").hidden ? null
      : document.getElementById("held-reason").textContent,
    rate_last: Number(document.getElementById("rate-last").textContent),
    rate_limit: Number(document.getElementById("rate-limit").textContent),
    doubt_entered: Number(document.getElementById("doubt-entered").textContent),
    rate_points: (document.getElementById("rate-line")?.getAttribute("d") || "").split("L").length,
  };
}"""


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (30, 5.0)  # 6 requests a second: the campaign runs long enough to be watched


def agent_file(n: int, prefix: str = "96") -> bytes:
    rows = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    rows += [f"{AGENT},{mobile(prefix, i)},08030752400,order-{i},600,30" for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    api_settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    with ServerThread(sock, create_app(api_settings)):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def cli_status(workers: Workers, campaign: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "producer", "status", campaign, "--json"],
        env=workers.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def confirm(page: Any, button: str) -> None:
    page.click(f"#{button}")
    page.wait_for_selector("#confirm[open]")
    assert button in page.inner_text("#confirm-text").lower()
    page.click("#confirm-yes")


def test_given_a_running_campaign_when_its_page_is_open_then_it_shows_the_ledger_and_pauses(
    settings: Settings, sim: Any, served: str, chromium: Any, tmp_path: Path
) -> None:
    # Callbacks to the real receiver (the call_status mix), and a few replies slower than
    # the read timeout (in-doubt calls, settled by Call Details or their callback).
    sim.configure(
        latency=True, time_scale=0.2, callbacks=True, p_slow_placed=0.08, slow_seconds=6.0
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        callback_receiver(settings) as cb,
        httpx.Client(base_url=served, headers=auth, timeout=30) as api,
    ):
        workers = Workers(cb, tmp_path)
        try:
            run_campaign(api, sim, workers, served, chromium)
        finally:
            workers.stop()


def run_campaign(api: httpx.Client, sim: Any, workers: Workers, served: str, chromium: Any) -> None:
    resp = api.post(
        "/v1/campaigns/page-run/calls",
        content=agent_file(N),
        headers={"Content-Type": "text/csv"},
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == N, resp.text
    workers.start(2, concurrency=4)

    page = chromium.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served}/campaigns/page-run")
    assert page.url == f"{served}/login?next=/campaigns/page-run"
    page.fill("#token", "a-wrong-token-000000")
    page.click("#login")
    assert "not an API token" in page.inner_text("#login-error")
    page.fill("#token", TOKEN)
    page.click("#login")
    page.wait_for_url(f"{served}/campaigns/page-run")
    page.wait_for_selector("body[data-loaded='1']")
    errors.clear()  # the refused login's 401 was logged; from here on, none is expected
    assert (
        "HttpOnly" not in page.evaluate("document.cookie")
        and page.evaluate("document.cookie") == ""
    )  # the session cookie is HttpOnly: the page's script cannot read it

    def seen() -> dict[str, Any]:
        return page.evaluate(READ_PAGE)  # type: ignore[no-any-return]

    wait_for(
        lambda: (
            seen()["states"].get("originated", 0) >= 70 and sum(seen()["call_status"].values()) > 5
        ),
        timeout=90,
        message=lambda: f"the page to show progress: {seen()} {workers.output()[-2000:]}",
    )
    running = seen()
    assert running["badge"] == "running" and running["total"] == N
    assert running["rate_limit"] == 30
    assert 0 < running["rate_last"] <= 30
    shot = os.environ.get("CALLQ_PAGE_SCREENSHOT")
    if shot:
        page.screenshot(path=str(ROOT / shot), full_page=True)

    # Pause, with its confirmation: the page says paused, the ledger agrees.
    confirm(page, "pause")
    page.wait_for_selector("#badge.paused")
    wait_for(lambda: seen()["held"] == "paused", timeout=15, message=lambda: str(seen()))

    def agrees() -> bool:
        status = api.get("/v1/campaigns/page-run").json()
        mine = seen()
        return (
            status["states"]["dialing"] == 0
            and mine["states"] == status["states"]
            and mine["call_status"] == status["call_status"]
        )

    wait_for(agrees, timeout=60, message=lambda: f"{seen()} vs the API")
    status = api.get("/v1/campaigns/page-run", params={"details": "true"}).json()
    assert status["controls"]["paused"] is True and status["held"]["reason"] == "paused"
    assert status["states"]["queued"] + status["states"]["retrying"] > 0
    assert page.is_disabled("#pause") and page.is_enabled("#resume")

    # Cancel asked, then not confirmed: nothing changes.
    page.click("#cancel")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-no")
    assert api.get("/v1/campaigns/page-run").json()["states"]["cancelled"] == 0

    # Resume, with its confirmation; the campaign ends and the page shows what status does.
    confirm(page, "resume")
    page.wait_for_selector("#badge.running, #badge.done")
    wait_for(
        lambda: (
            api.get("/v1/campaigns/page-run").json()["states"]["originated"] == N
            and seen()["badge"] == "done"
        ),
        timeout=120,
        message=lambda: f"{seen()} {workers.output()[-2000:]}",
    )
    final = cli_status(workers, "page-run")

    def same_as_cli() -> bool:
        mine = seen()
        return mine["states"] == final["states"] and mine["call_status"] == final["call_status"]

    wait_for(same_as_cli, timeout=10, message=lambda: f"{seen()} vs {final}")
    done = seen()
    assert done["total"] == final["total"] == N and done["held"] is None
    assert final["states"]["originated"] == N
    assert done["doubt_entered"] >= 0
    assert errors == []
    truth = sim.truth()
    assert truth["originated"] == N and sorted(truth["by_custom_field"].values()) == [1] * N


def test_given_a_held_campaign_when_cancelled_from_the_page_then_its_calls_end_cancelled(
    settings: Settings, workers: Workers, served: str, chromium: Any
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=served, headers=auth, timeout=30) as api:
        resp = api.post(
            "/v1/campaigns/page-held/calls",
            content=agent_file(12, "95"),
            headers={"Content-Type": "text/csv"},
            params={"send_at": "2099-01-01T10:00+05:30"},
        )
        assert resp.status_code == 200, resp.text
        workers.start(1, concurrency=2)
        page = chromium.new_page()
        page.goto(f"{served}/")
        page.fill("#token", TOKEN)
        page.click("#login")
        page.wait_for_url(f"{served}/")
        page.wait_for_selector("tr[data-campaign='page-held'] a")
        page.click("tr[data-campaign='page-held'] a")
        page.wait_for_url(f"{served}/campaigns/page-held")
        page.wait_for_selector("body[data-loaded='1']")
        assert page.text_content("#held-reason") == "send_at"
        assert "send_at" in page.inner_text("#held-log")
        confirm(page, "cancel")
        page.wait_for_selector("#badge.cancelled")
        wait_for(
            lambda: api.get("/v1/campaigns/page-held").json()["states"]["cancelled"] == 12,
            timeout=30,
        )
        wait_for(lambda: page.inner_text("#states td[data-state='cancelled']") == "12", timeout=10)
        assert page.is_disabled("#pause") and page.is_disabled("#cancel")
        cli = cli_status(workers, "page-held")
        assert cli["states"]["cancelled"] == 12
