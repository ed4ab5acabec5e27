"""The HTTP face of the simulator: Exotel's paths, plus ``/_sim/*`` control endpoints."""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.parser
import email.policy
import hmac
import json
import logging
import re
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, parse_qsl, urlsplit

from simulator.calls import Decision
from simulator.config import Account, SimConfig
from simulator.formats import json_body, rest_exception, xml_body
from simulator.scheduler import Scheduler
from simulator.state import SimState

__all__ = ["Simulator"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
IDLE_TIMEOUT = 120.0

_CONNECT = re.compile(r"^/v1/Accounts/(?P<sid>[^/]+)/Calls/connect(?P<json>\.json)?/?$")
_LIST = re.compile(r"^/v1/Accounts/(?P<sid>[^/]+)/Calls(?P<json>\.json)?/?$")
_ONE = re.compile(r"^/v1/Accounts/(?P<sid>[^/]+)/Calls/(?P<call>[^/.]+)(?P<json>\.json)?/?$")
_ACCOUNT_PATH = re.compile(r"^/v1/Accounts/(?P<sid>[^/]+)(/|$)")


class _BadBody(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    # socketserver listens with a backlog of 5: 100 callers connecting in the same
    # millisecond (gevent greenlets do) overflowed it and got resets. Exotel's is deep.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A peer that resets or drops its connection is normal here; anything else is logged."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("connection from %s dropped: %s", client_address, exc)
            return
        log.exception("error while serving %s", client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ExotelSimulator/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    @property
    def _srv(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    @property
    def _sim(self) -> Simulator:
        return self._srv.sim

    # --- connection bookkeeping ---------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        # and the peer's delayed ACK add ~40 ms to every keep-alive reply.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._srv.connections_lock:
            self._srv.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self._srv.connections_lock:
                self._srv.connections.discard(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        if self._sim.verbose:
            super().log_message(format, *args)

    # --- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        as_json = path.endswith(".json") or path.startswith("/_sim")
        try:
            body = self._read_body()
        except _BadBody as exc:
            self.close_connection = True
            self._reply(exc.status, rest_exception(exc.status, str(exc)), as_json=as_json)
            return
        if self._sim.stopping:
            self._abort()
            return
        try:
            if path.startswith("/_sim/"):
                self._control(method, path, body)
            elif path.startswith("/v1/"):
                self._exotel(method, path, body)
            else:
                self._reply(404, rest_exception(404, "Not Found"), as_json=True)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # never let a handler take the server down
            log.exception("simulator handler failed on %s %s", method, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._reply(500, rest_exception(500, "Simulator error"), as_json=as_json)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError as exc:
            raise _BadBody(400, "Bad Content-Length") from exc
        if length < 0:
            raise _BadBody(400, "Bad Content-Length")
        if length > MAX_BODY:
            raise _BadBody(413, "Request body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadBody(400, "Bad chunked body") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > MAX_BODY:
                raise _BadBody(413, "Request body too large")
            out += self.rfile.read(size)
            self.rfile.readline(16)

    # --- replies ------------------------------------------------------------------------------

    def _reply(
        self,
        status: int,
        payload: Any,
        *,
        as_json: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json_body(payload) if as_json else xml_body(payload)
        self.send_response(status)
        self.send_header(
            "Content-Type",
            "application/json; charset=utf-8" if as_json else "application/xml; charset=utf-8",
        )
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _reply_raw(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _abort(self) -> None:
        """Reset the TCP connection: SO_LINGER (1, 0), then close, so the peer sees an RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    def _carry_out(self, decision: Decision, *, as_json: bool) -> None:
        if decision.delay > 0 and self._sim.wait_or_stop(decision.delay):
            self._abort()
            return
        if decision.reset:
            self._abort()
            return
        if decision.raw is not None:
            self._reply_raw(decision.status, *decision.raw)
            return
        # No Retry-After on a 429: Exotel documents none, so a client must cope without it.
        self._reply(decision.status, decision.payload, as_json=as_json)

    # --- /_sim control ------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> None:
        sim = self._sim
        name = path.rstrip("/")
        routes = {
            "/_sim/truth": ("GET",),
            "/_sim/arrivals": ("GET",),
            "/_sim/health": ("GET",),
            "/_sim/config": ("GET", "POST"),
            "/_sim/script": ("POST",),
            "/_sim/reset": ("POST",),
            "/_sim/calls": ("POST",),
        }
        if name not in routes:
            self._reply(404, {"error": "not found"}, as_json=True)
            return
        if method not in routes[name]:
            self._reply(
                405,
                {"error": "method not allowed"},
                as_json=True,
                headers={"Allow": ", ".join(routes[name])},
            )
            return
        if name == "/_sim/truth":
            self._reply(200, sim.truth(), as_json=True)
            return
        if name == "/_sim/arrivals":
            self._reply(200, sim.state.arrivals(), as_json=True)
            return
        if name == "/_sim/health":
            self._reply(200, {"ok": True}, as_json=True)
            return
        if method == "GET":  # /_sim/config
            self._reply(200, sim.state.config_view(), as_json=True)
            return
        if name == "/_sim/reset":
            sim.reset()
            self._reply(200, {"ok": True}, as_json=True)
            return
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            if name == "/_sim/config":
                sim.configure(**data)
                self._reply(200, sim.state.config_view(), as_json=True)
            elif name == "/_sim/calls":
                self._reply(200, {"Sid": sim.add_call_from_json(data)}, as_json=True)
            else:
                key, faults = data.get("key"), data.get("faults")
                sim.script(cast(str, key), cast(list[str], faults))
                self._reply(200, {"ok": True}, as_json=True)
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            self._reply(400, {"error": str(exc)}, as_json=True)

    # --- Exotel paths -------------------------------------------------------------------------

    def _authenticate(self, account: Account) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, sep, token = decoded.partition(":")
        if not sep:
            return False
        key_ok = hmac.compare_digest(key.encode(), account.api_key.encode())
        token_ok = hmac.compare_digest(token.encode(), account.api_token.encode())
        return key_ok and token_ok

    def _exotel(self, method: str, path: str, body: bytes) -> None:
        sim = self._sim
        connect = _CONNECT.match(path)
        listing = None if connect else _LIST.match(path)
        one = None if connect or listing else _ONE.match(path)
        match = connect or listing or one
        as_json = path.rstrip("/").endswith(".json")
        if match is None:
            self._reply(404, rest_exception(404, "Not Found"), as_json=as_json)
            return
        account = sim.state.account(match.group("sid"))
        if account is None:
            self._reply(404, rest_exception(404, "Account not found"), as_json=as_json)
            return
        wanted = "POST" if connect else "GET"
        if method != wanted:
            self._reply(
                405,
                rest_exception(405, "Method Not Allowed"),
                as_json=as_json,
                headers={"Allow": wanted},
            )
            return
        if not self._authenticate(account):
            self._reply(
                401,
                rest_exception(401, "Authentication is required to view this resource."),
                as_json=as_json,
                headers={"WWW-Authenticate": 'Basic realm="Exotel"'},
            )
            return
        if connect:
            try:
                params = self._form(body)
            except ValueError:
                params = None
            if params is None:
                if not sim.state.admit(account, connect=True):
                    decision = Decision(429, rest_exception(429, "Too Many Requests"))
                else:
                    decision = Decision(400, rest_exception(400, "Invalid request body"))
            else:
                decision = sim.state.connect(account, params, as_json=as_json)
            self._carry_out(decision, as_json=as_json)
            return
        if not sim.state.admit(account, connect=False):
            self._carry_out(
                Decision(429, rest_exception(429, "Too Many Requests")), as_json=as_json
            )
            return
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if listing:
            decision = sim.state.list_calls(account, query, as_json=as_json)
        else:
            assert one is not None
            details = (query.get("details") or ["false"])[-1].lower() == "true"
            decision = sim.state.get_call(
                account, one.group("call"), as_json=as_json, details=details
            )
        self._carry_out(decision, as_json=as_json)

    def _form(self, body: bytes) -> dict[str, str]:
        """Form parameters of a POST body (url-encoded or multipart); the last value wins."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
            )
            if not message.is_multipart():
                raise ValueError("bad multipart body")
            form: dict[str, str] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if not isinstance(name, str):
                    continue
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                form[name] = data.decode("utf-8", "replace")
            return form
        text = body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True))


class Simulator:
    """A real HTTP server that behaves like Exotel's voice API.

    ``start()`` serves in a background thread; ``port=0`` picks a free port.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.host = host
        self.port = port
        self.verbose = verbose
        self._scheduler = Scheduler()
        self.state = SimState(self.config, self._scheduler)
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._scheduler.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"exotel-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server, wake delayed replies, drop open connections and pending callbacks."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        self._scheduler.stop()
        if self._thread is not None:
            self._thread.join(2.0)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_or_stop(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when the simulator was stopped meanwhile."""
        return self._stop.wait(seconds)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not started")
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        elif host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    # --- the same operations as /_sim/* -------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        return self.state.truth()

    def arrivals(self) -> dict[str, Any]:
        return self.state.arrivals()

    def counts(self) -> dict[str, int]:
        """Requests, originations and 429s so far (cheap: for polling during a run)."""
        return self.state.counts()

    def script(self, key: str, faults: list[str]) -> None:
        self.state.script(key, faults)

    def configure(self, **changes: Any) -> None:
        self.config = self.state.configure(changes)

    def reset(self) -> None:
        self.state.reset()

    def add_call(
        self,
        *,
        from_: str,
        to: str,
        direction: str,
        status: str = "completed",
        created: float | None = None,
        duration: int = 30,
        account_sid: str | None = None,
    ) -> str:
        """List a call we did not place (see :meth:`SimState.add_call`); returns its Sid.
        ``account_sid``: the first account when None."""
        return self.state.add_call(
            account_sid or self.config.accounts[0].sid,
            from_,
            to,
            direction=direction,
            status=status,
            created=created,
            duration=duration,
        )

    def add_call_from_json(self, data: dict[str, Any]) -> str:
        """``POST /_sim/calls``: ``{"From", "To", "Direction", "Status"?, "DateCreated"?
        (epoch seconds), "Duration"?, "AccountSid"?}``. Raises ValueError naming a field."""
        for name in ("From", "To", "Direction"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"{name} is required (a string)")
        created = data.get("DateCreated")
        if created is not None and (
            isinstance(created, bool) or not isinstance(created, int | float)
        ):
            raise ValueError("DateCreated must be epoch seconds")
        return self.add_call(
            from_=data["From"],
            to=data["To"],
            direction=data["Direction"],
            status=str(data.get("Status", "completed")),
            created=created,
            duration=int(data.get("Duration", 30)),
            account_sid=data.get("AccountSid"),
        )
