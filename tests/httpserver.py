"""A local HTTP server on 127.0.0.1 that serves files and fails on purpose."""

from __future__ import annotations

import threading
import zlib
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MediaServer:
    """Routes: /files/<name>, /status/<code>, /flaky/<n>/<name> (n failures with 503 first),
    /slow/<seconds>/<name>, /truncated/<name> (announces more bytes than it sends)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                with server._lock:
                    server.hits[self.path] += 1
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    hit = server.hits[self.path]
                try:
                    server.route(self, hit)
                finally:
                    with server._lock:
                        server.active -= 1

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # clients that hang up on purpose
                import sys

                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def route(self, h: BaseHTTPRequestHandler, hit: int) -> None:
        parts = h.path.strip("/").split("/")
        kind = parts[0]
        if kind == "status":
            return self._send(h, int(parts[1]), b"error page")
        if kind == "flaky" and hit <= int(parts[1]):
            return self._send(h, 503, b"try again")
        if kind == "slow":
            time.sleep(float(parts[1]))
        path = self.root / parts[-1]
        if not path.is_file():
            return self._send(h, 404, b"not found")
        body = path.read_bytes()
        if kind == "truncated":
            h.send_response(200)
            h.send_header("Content-Length", str(len(body) + 1000))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.close_connection = True
            return
        if kind == "delay":  # every request takes a little while: shows concurrency
            time.sleep(0.2)
        if kind == "chaos":  # 30% 5xx, some slow, some truncated, deterministic per (path, attempt)
            roll = zlib.crc32(f"{h.path}#{hit}".encode()) % 10
            if roll < 3:
                return self._send(h, 503, b"busy")
            if roll == 3:
                time.sleep(3)  # slower than the client's timeout
            if roll == 4:
                h.send_response(200)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body[: len(body) // 3])
                h.close_connection = True
                return
        self._send(h, 200, body)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        h.send_response(code)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
