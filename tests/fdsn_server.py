"""A real fdsnws-dataselect server on 127.0.0.1 for tests and benchmarks.

:class:`DataselectServer` indexes miniSEED files with ``mseedindex`` (SQLite) and serves them
with ``portable-fdsnws-dataselect`` on a free port. :class:`FlakyProxy` is a small HTTP proxy
on 127.0.0.1 in front of it that can answer 503 to the first request(s) of a station, delay
every request, and count requests — real sockets, so the client's retry path runs unchanged.
Given ``credentials``, the proxy holds restricted data: dataselect ``query`` answers HTTP 401,
``queryauth`` asks for HTTP Digest authentication (RFC 2617, MD5, qop=auth) with that user
name and password and then forwards to ``query`` (``auth_failures`` counts refused attempts).
Neither serves station metadata: tests give the client a local StationXML file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BIN = Path(sys.executable).parent
#: Realm of the HTTP Digest challenge of a restricted :class:`FlakyProxy`.
REALM = "FDSN"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH")
    return found


def _drop_latest_token(index: Path) -> None:
    """Remove the ``latest=>N`` entry from every ``timeindex`` of an mseedindex SQLite index.

    Works around a bug in portable-fdsnws-dataselect 2.0.2: it reads that entry's value as a
    byte offset, so a request ending inside a row's last sub-index interval is cut after one
    record (an empty HTTP 200 when the window lies inside one file). Without the entry the
    server uses the end of the row, which is correct.
    """
    with sqlite3.connect(index) as db:
        rows = db.execute("SELECT rowid, timeindex FROM tsindex").fetchall()
        for rowid, timeindex in rows:
            kept = ",".join(e for e in (timeindex or "").split(",") if not e.startswith("latest"))
            db.execute("UPDATE tsindex SET timeindex = ? WHERE rowid = ?", (kept or None, rowid))


class DataselectServer:
    """portable-fdsnws-dataselect serving ``files`` (miniSEED) from an index in ``workdir``."""

    def __init__(self, files: list[Path], workdir: Path):
        self.files = [Path(f) for f in files]
        self.workdir = Path(workdir)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> DataselectServer:
        """Build the SQLite index, write the server config, start and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        index = self.workdir / "timeseries.sqlite"
        subprocess.run(
            [_tool("mseedindex"), "-sqlite", str(index), *map(str, self.files)],
            check=True,
            capture_output=True,
        )
        _drop_latest_token(index)
        ini = self.workdir / "server.ini"
        ini.write_text(
            "[index_db]\n"
            f"path = {index}\ntable = tsindex\nsummary_table = tsindex_summary\n"
            "[server]\n"
            f"interface = 127.0.0.1\nport = {self.port}\n"
            "[logging]\n"
            f"path = {self.workdir / 'dataselect.log'}\nlevel = WARNING\n"
        )
        server = _tool("portable-fdsnws-dataselect")
        subprocess.run([server, "-i", str(ini)], check=True, capture_output=True)
        self.process = subprocess.Popen(
            [server, str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        version = f"{self.base_url}/fdsnws/dataselect/1/version"
        while True:
            try:
                with urllib.request.urlopen(version, timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"dataselect server did not start ({self.workdir})"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the server process (ours, by its handle)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> DataselectServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FlakyProxy:
    """HTTP proxy on 127.0.0.1 forwarding GETs to ``upstream``.

    ``fail_first[station] = n`` answers HTTP 503 to the first ``n`` requests for that station;
    ``always[station] = status`` answers every request for that station with ``status``;
    ``rewrite[station] = f`` replaces the body of a successful answer for that station by
    ``f(body)`` (a cut transfer, garbage, another station's data); ``delay_s`` sleeps before each
    forward. ``requests`` lists (station, status) per request.
    With ``stationxml``, it is also a minimal fdsnws-station endpoint: every
    ``/fdsnws/station/1/query`` gets that file (unfiltered); the queries land in
    ``station_queries`` (parsed parameters).
    """

    def __init__(
        self,
        upstream: str,
        delay_s: float = 0.0,
        stationxml: Path | None = None,
        credentials: tuple[str, str] | None = None,
    ):
        self.credentials = credentials
        self.nonce = secrets.token_hex(16)
        self.auth_failures = 0
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s
        self.stationxml = stationxml
        self.station_queries: list[dict[str, list[str]]] = []
        self.fail_first: dict[str, int] = {}
        self.always: dict[str, int] = {}
        self.rewrite: dict[str, Callable[[bytes], bytes]] = {}
        self.requests: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                return

            def do_GET(self) -> None:
                if proxy.credentials and "/dataselect/" in self.path and not self._allowed():
                    return
                url = urlparse(self.path)
                if proxy.stationxml and url.path == "/fdsnws/station/1/query":
                    proxy.station_queries.append(parse_qs(url.query))
                    self._reply(200, proxy.stationxml.read_bytes())
                    return
                station = parse_qs(url.query).get("station", [""])[0]
                with proxy._lock:
                    status = proxy.always.get(station)
                    if status is None and proxy.fail_first.get(station, 0) > 0:
                        proxy.fail_first[station] -= 1
                        status = 503
                if status is not None:
                    self._reply(status, f"HTTP {status} from the test proxy".encode())
                    proxy._log(station, status)
                    return
                time.sleep(proxy.delay_s)
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as resp:
                        status, body = resp.status, resp.read()
                except urllib.error.HTTPError as err:
                    status, body = err.code, err.read()
                if status == 200 and station in proxy.rewrite:
                    body = proxy.rewrite[station](body)
                self._reply(status, body)
                proxy._log(station, status)

            def _allowed(self) -> bool:
                """Restricted data: ``query`` is refused; ``queryauth`` needs the account
                (then forwarded as ``query``). Answers 401 itself when not allowed."""
                path, _, query = self.path.partition("?")
                if path.endswith("/queryauth"):
                    if proxy.digest_ok(self.headers.get("Authorization", ""), self.path):
                        self.path = path.removesuffix("auth") + "?" + query
                        return True
                    with proxy._lock:
                        proxy.auth_failures += 1
                elif not path.endswith("/query"):
                    return True  # version, application.wadl
                challenge = f'Digest realm="{REALM}", nonce="{proxy.nonce}", qop="auth"'
                body = b"HTTP 401: restricted data"
                self.send_response(401)
                self.send_header("WWW-Authenticate", challenge)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return False

            def _reply(self, status: int, body: bytes) -> None:
                body = b"" if status == 204 else body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def digest_ok(self, header: str, uri: str) -> bool:
        """Whether ``header`` (an ``Authorization`` value) answers this proxy's challenge for
        a GET of ``uri`` with its credentials."""
        if not header.startswith("Digest ") or self.credentials is None:
            return False
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[len("Digest ") :]))
        user, password = self.credentials
        if fields.get("username") != user or fields.get("nonce") != self.nonce:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1, ha2 = md5(f"{user}:{REALM}:{password}"), md5(f"GET:{fields.get('uri', '')}")
        parts = (ha1, self.nonce, fields.get("nc", ""), fields.get("cnonce", ""), "auth", ha2)
        expected = md5(":".join(parts))
        return fields.get("uri") == uri and hmac.compare_digest(
            expected, fields.get("response", "")
        )

    def _log(self, station: str, status: int) -> None:
        with self._lock:
            self.requests.append((station, status))

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
