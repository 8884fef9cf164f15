"""A threaded HTTP server on 127.0.0.1 for the remote-scene tests: it serves a folder with `Range` support, `ETag`
and `Last-Modified`, logs every byte range it sends, and answers paths under `/slow/` only after `SLOW_SECONDS`."""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOW_SECONDS = 3.0
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class ServedLog:
    """What the server sent: (file name, first byte, last byte) of every GET body, and the multi-range requests."""

    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bytes_of(self, name: str) -> int:
        with self.lock:
            return sum(end - start + 1 for served, start, end in self.ranges if served == name)

    def clear(self) -> None:
        with self.lock:
            self.ranges.clear()


def _handler(root: Path, log: ServedLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _file(self) -> Path | None:
            name = self.path.split("?", 1)[0].lstrip("/")
            if name.startswith("slow/"):
                time.sleep(SLOW_SECONDS)
                name = name[len("slow/"):]
            path = (root / name).resolve()
            return path if path.is_file() and root.resolve() in path.parents else None

        def _headers(self, path: Path, status: int, length: int, extra: dict[str, str]) -> None:
            stat = path.stat()
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
            self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()

        def do_HEAD(self) -> None:
            path = self._file()
            if path is None:
                self.send_error(404)
                return
            self._headers(path, 200, path.stat().st_size, {})

        def do_GET(self) -> None:
            path = self._file()
            if path is None:
                self.send_error(404)
                return
            data = path.read_bytes()
            start, end = 0, len(data) - 1
            match = _RANGE.match(self.headers.get("Range", ""))
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                self._headers(path, 206, end - start + 1, {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
            else:
                self._headers(path, 200, len(data), {})
            with log.lock:
                log.ranges.append((path.name, start, end))
            self.wfile.write(data[start : end + 1])

    return Handler


@contextmanager
def range_server(root: Path) -> Iterator[tuple[str, ServedLog]]:
    """Serve `root` on 127.0.0.1 (a free port) for the `with` block; yields (base URL, log)."""
    log = ServedLog()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
