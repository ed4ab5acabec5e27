"""Events sent onward, end to end: a campaign through real workers, the simulator and the real
callback receiver; an events receiver on loopback that fails, times out (so it gets events
twice) and goes down; a worker SIGKILLed mid-campaign and Redis restarted (AOF). Every final
call's event arrives exactly once after dedupe, every signature verifies, and the campaign's
completion arrives."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from callq.intake.enqueue import Enqueuer
from callq.settings import Settings
from callq.store.connect import make_redis
from callq.store.events import sink_id
from callq.store.keys import Keys
from callq.store.ledger import Ledger
from callq.sweeping.events import SIGNATURE_HEADER, verify
from devstack.embedded import EmbeddedRedis
from tests.campaigns import as_stream, campaign_csv
from tests.conftest import Workers, callback_receiver, wait_for

pytestmark = pytest.mark.slow

SECRET = "events-secret-for-the-system-test"
CALLS = 20


@pytest.fixture
def sim_limit() -> tuple[int, float]:
    return (100, 5.0)


class FlakyReceiver:
    """Answers 500 to every 4th request and sleeps past the sender's timeout on every 5th
    (then answers 200: it has the event, the sender does not know, and sends it again);
    ``down`` answers 500 to all. Records every request."""

    def __init__(self, slow: float) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.down = False
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    n = len(outer.requests) + 1
                    status = 500 if outer.down or n % 4 == 0 else 200
                    outer.requests.append((dict(self.headers), body, status))
                if status == 200 and n % 5 == 0:
                    time.sleep(slow)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> dict[str, list[dict[str, Any]]]:
        """Event id -> every body the receiver took (answered 200), after dedupe by id."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for _, body, status in self.requests:
                if status == 200:
                    doc = json.loads(body)
                    out.setdefault(doc["id"], []).append(doc)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_given_a_flaky_receiver_a_killed_worker_and_a_redis_restart_then_each_event_once(
    settings: Settings, sim: Any, tmp_path: Path, request: Any
) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    request.addfinalizer(server.stop)
    hook = FlakyReceiver(slow=2.0)
    request.addfinalizer(hook.close)
    base = settings.model_copy(
        update={
            "redis_url": server.url,
            "visibility_timeout_seconds": 60,
            "events_url": hook.url,
            "events_secret": SecretStr(SECRET),
            "events_timeout_seconds": 1.0,
        }
    )
    client = make_redis(server.url)
    request.addfinalizer(client.close)
    keys = Keys(base.key_prefix)
    ledger = Ledger(client, keys)
    sim.configure(callbacks=True, time_scale=0.02, p_duplicate_callback=0.3)
    with callback_receiver(base) as s:
        workers = Workers(s, tmp_path)
        request.addfinalizer(workers.stop)
        # Short TimeOut and TimeLimit: a call the killed worker left in doubt (sent, but the
        # simulator never took it) is proven unplaced within seconds, and dialled again.
        rows = campaign_csv(CALLS, time_limit=5, time_out=5)
        assert Enqueuer(s).enqueue_file(as_stream(rows), "ev").accepted == CALLS
        first, _ = workers.start(2, concurrency=4)
        wait_for(lambda: len(hook.accepted()) >= 3, timeout=60, message="first events")
        workers.kill(first)  # SIGKILL: its leased events and its calls are another's now
        workers.start(1, concurrency=4)

        def written() -> int:
            try:
                return int(client.xlen(keys.events()))
            except redis.ConnectionError:
                return -1  # Redis is restarting

        wait_for(
            lambda: written() >= CALLS + 1,
            timeout=90,
            message=lambda: f"{ledger.status('ev').states} {written()} {workers.output()[-2500:]}",
        )
        hook.down = True  # events wait in the due set across the restart
        server.stop()
        time.sleep(1.0)
        server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()
        request.addfinalizer(server.stop)
        wait_for(lambda: written() >= CALLS + 1, timeout=20, message="the stream after restart")
        time.sleep(2.0)  # sends after the restart fail against the down receiver
        hook.down = False
        replay = subprocess.run(
            [sys.executable, "-m", "producer", "events", "replay", "--since", "10m"],
            env=workers.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.startswith(f"{CALLS + 1} events since "), replay.stdout
        due = keys.events_due(sink_id(hook.url))
        wanted = {f"call.final:{r}" for r in ledger.iter_request_ids("ev")}
        wanted.add(f"campaign.completed:ev:{CALLS}")
        # Every event taken once at least (one the receiver took but timed out on may still be
        # due, after its backoff: the receiver dedupes it).
        wait_for(
            lambda: set(hook.accepted()) == wanted,
            timeout=60,
            message=lambda: (
                f"{len(wanted - set(hook.accepted()))} events missing, "
                f"{client.zcard(due)} due {workers.output()[-2500:]}"
            ),
        )
    # Written once each, in the same step as the transition.
    ids = [f["id"] for _, f in client.xrange(keys.events())]
    assert sorted(ids) == sorted(wanted)
    got = hook.accepted()
    assert sum(len(v) for v in got.values()) > len(got)  # the receiver saw duplicates
    assert client.hlen(keys.events_dead()) == 0
    for headers, body, _ in hook.requests:
        assert verify(SECRET.encode(), body, headers[SIGNATURE_HEADER])
    for rec in ledger.call_records("ev"):
        (doc, *_) = got[f"call.final:{rec.request_id}"]
        data = doc["data"]
        assert (data["state"], data["sid"], data["call_status"]) == (
            str(rec.state),
            rec.sid,
            rec.call_status,
        )
        assert data["call_status"]  # final only once its terminal status came
    (done, *_) = got[f"campaign.completed:ev:{CALLS}"]
    assert done["data"]["total"] == CALLS
    assert sum(done["data"]["states"].values()) == CALLS
