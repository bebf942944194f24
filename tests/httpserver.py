"""A loopback HTTP server for collateral-fetch tests (binds 127.0.0.1 port 0).

Serves ``root/<path>`` where <path> is the request target including its query string, so a
test can assert the exact URL a client derived (AMD KDS VCEK URLs carry the TCB in the
query). Every request target is recorded in ``requests``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Served:
    base_url: str
    root: Path
    requests: list[str] = field(default_factory=list)


@contextmanager
def serve_dir(root: Path) -> Iterator[Served]:
    served = Served("", root)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            rel = unquote(self.path).lstrip("/")
            target = (root / rel).resolve()
            if root.resolve() not in target.parents or not target.is_file():
                self.send_error(404)
                return
            body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)
