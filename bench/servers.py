"""Loopback servers for the download benchmark, with the latency of a real object store.

Run as ``python bench/servers.py http|s3 PORT LATENCY_MS [DIRECTORY]``: a threaded HTTP/1.1
file server, or moto's S3 (and STS) app, each answering after LATENCY_MS, with a listen
backlog large enough for many clients (a small one drops connections under load).
"""

from __future__ import annotations

import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from functools import partial


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object stores
    latency = 0.0

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(self.latency)
        super().do_GET()


def serve_http(port: int, latency: float, directory: str) -> None:
    handler = partial(type("H", (_Handler,), {"latency": latency}), directory=directory)
    _Server(("127.0.0.1", port), handler).serve_forever()


def serve_s3(port: int, latency: float) -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    inner = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            time.sleep(latency)
        return inner(environ, start_response)

    server = make_server("127.0.0.1", port, app, threaded=True)
    server.socket.listen(1024)
    server.serve_forever()


if __name__ == "__main__":
    kind, port, latency_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000.0
    if kind == "http":
        serve_http(port, latency_ms, sys.argv[4])
    else:
        serve_s3(port, latency_ms)
