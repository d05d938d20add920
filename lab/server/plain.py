"""Stdlib variant of the lab server (http.server, HTTP/1.1 keep-alive, one thread per
connection) that writes its late /exec response into a socket the client has already
closed.

uvicorn notices the client's FIN and silently drops the late response, so its captures
end quietly. A plain blocking server does not look: it sleeps, writes the response
anyway, and the client's kernel (whose socket is gone) answers that data with RST.
That is the `response_after_close` picture.

Same endpoints, flags and log format as app.py:
  python lab/server/plain.py --port 8101 [--fix] [--exec-seconds 10] [--keep-alive-timeout 5] [--host ::1]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script or loaded by path
from lablog import log, utc_now  # noqa: E402,F401


def peer_has_closed(sock: socket.socket) -> bool:
    """True if the peer's FIN (or RST) is already queued: readable with 0 bytes to peek."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless a side says Connection: close
    server_version = "plain-lab/1"
    cfg: dict = {}

    def log_message(self, format, *args):  # our own log lines replace the stderr access log
        pass

    def _port(self):
        return self.client_address[1]

    def _send_json(self, status: int, payload: dict, close: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        log("response_start", client_port=self._port(), method=self.command, target=self.path,
            status=status, connection="close" if close else "")
        self.wfile.write(body)
        self.wfile.flush()

    def _log_request(self):
        log("request", client_ip=self.client_address[0], client_port=self._port(), method=self.command,
            target=self.path, user_agent=self.headers.get("User-Agent", ""),
            lab_id=self.headers.get("X-Lab-Req", ""))

    def do_GET(self):
        self._log_request()
        url = urlsplit(self.path)
        if url.path == "/health":
            return self._send_json(200, {"ok": True})
        if url.path.startswith("/files/"):
            session_id = url.path[len("/files/"):]
            files = [{"id": f"{session_id}-f1", "name": "input.txt", "size": 2048}]
            if parse_qs(url.query).get("detail") == ["full"]:
                files[0].update({"path": f"/mnt/data/{session_id}/input.txt", "mime": "text/plain"})
            return self._send_json(200, {"session_id": session_id, "files": files}, close=self.cfg["fix"])
        return self._send_json(404, {"detail": "Not Found"})

    def do_POST(self):
        self._log_request()
        url = urlsplit(self.path)
        if url.path != "/exec":
            return self._send_json(404, {"detail": "Not Found"})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seconds = float(parse_qs(url.query).get("seconds", [self.cfg["exec_seconds"]])[0])
        started = time.monotonic()
        log("exec_start", client_port=self._port(), seconds=seconds, body_bytes=len(body), heartbeat=False)
        time.sleep(seconds)  # blocking on purpose: nothing reads the socket meanwhile
        gone = peer_has_closed(self.connection)
        log("exec_end", client_port=self._port(), target=self.path, exit_code=0,
            elapsed_s=round(time.monotonic() - started, 6), client_disconnected=gone)
        if gone:
            log("late_write", client_port=self._port(), note="client already closed; writing the response anyway")
        try:
            self._send_json(200, {"exit_code": 0, "stdout": "done\n",
                                  "elapsed_s": round(time.monotonic() - started, 6)})
        except OSError as exc:
            log("write_failed", client_port=self._port(), error=repr(exc))
            self.close_connection = True

    def handle_one_request(self):
        # The base class closes idle keep-alive connections when `timeout` expires
        # (it catches TimeoutError); log that so server-side idle closes are visible.
        try:
            super().handle_one_request()
        except ConnectionResetError as exc:
            log("connection_reset", client_port=self._port(), error=repr(exc))
            self.close_connection = True
        if self.close_connection:
            log("connection_close", client_port=self._port())


class Server(ThreadingHTTPServer):
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--fix", action="store_true")
    parser.add_argument("--exec-seconds", type=float, default=10.0)
    parser.add_argument("--keep-alive-timeout", type=float, default=5.0,
                        help="close a keep-alive connection idle this long (seconds)")
    args = parser.parse_args(argv)
    Handler.cfg = {"fix": args.fix, "exec_seconds": args.exec_seconds}
    Handler.timeout = args.keep_alive_timeout
    # A background job of a non-interactive shell starts with SIGINT ignored, and Python
    # then keeps it ignored; install handlers so SIGINT/SIGTERM both stop the server.
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    cls = Server6 if ":" in args.host else Server
    httpd = cls((args.host, args.port), Handler)
    log("server_start", host=args.host, port=args.port, fix=args.fix, heartbeat=False,
        exec_seconds=args.exec_seconds, keep_alive_timeout=args.keep_alive_timeout, impl="http.server")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
