"""Path-lab client: Python `requests` (urllib3) over a real kernel TCP stack.

Runs inside the ssc-client network namespace (lab/record_paths.sh). One log line per
event, same format as the other lab programs:
    <ISO-8601 UTC, microseconds> client <event> key=value ...

Modes
  keepalive  GET /health, idle --idle seconds, GET /health again on the same pooled
             (keep-alive) connection of one requests.Session
  get        one GET /health (connect failures: refused, SYN black hole)
  upload     one POST /upload with a --body-bytes body (a server that never reads)

The only instrumentation: urllib3's create_connection is replaced by an equivalent that
binds the socket to (--source-ip, 0) before connect(), so the local port is known and
logged even when connect() fails, and the socket class logs its own close() together
with the kernel's TCP_INFO at that moment. Nothing else about the requests/urllib3
behaviour (timeouts, retries = requests' defaults, pooling) is changed.

usage: python lab/paths/client.py --host 198.18.2.2 --port 8401 --source-ip 198.18.1.2
                                  [--mode keepalive|get|upload] [--idle 6]
                                  [--connect-timeout 5] [--read-timeout 8] [--body-bytes N]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import struct
import sys
import time

import requests
import urllib3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server"))
from lablog import log as _log  # noqa: E402  (the lab's one log-line format)
import urllib3.util.connection as u3conn


def log(event: str, **fields) -> None:
    _log(event, "client", **fields)


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def tcp_info(sock: socket.socket) -> dict:
    """The first fields of the kernel's struct tcp_info (linux/tcp.h)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return {}
    (state, _ca, retransmits, probes, backoff, _opt, _wscale, _flags,
     rto, _ato, _snd_mss, _rcv_mss, unacked) = struct.unpack_from("8B5I", raw)
    return {"tcp_state": TCP_STATES.get(state, str(state)), "tcpi_retransmits": retransmits,
            "tcpi_probes": probes, "tcpi_backoff": backoff, "tcpi_rto_ms": rto // 1000,
            "tcpi_unacked": unacked}


class State:
    n_sockets = 0
    current: "LoggedSocket | None" = None


class LoggedSocket(socket.socket):
    """socket.socket that logs when the file descriptor is really closed."""

    lab_id = "-"
    lab_port = None

    def _real_close(self, *args, **kwargs):  # called once all makefile() users are gone
        info = tcp_info(self) if self.fileno() >= 0 else {}
        log("socket_close", sock=self.lab_id, local_port=self.lab_port, **info)
        return super()._real_close(*args, **kwargs)


def make_create_connection(source_ip: str):
    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None,
                          socket_options=None):
        host, port = address
        # Same steps as urllib3.util.connection.create_connection for one IPv4 address.
        family, stype, proto, _, sa = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0]
        sock = LoggedSocket(family, stype, proto)
        if socket_options:
            for opt in socket_options:
                sock.setsockopt(*opt)
        if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
            sock.settimeout(timeout)
        sock.bind((source_ip, 0))
        State.n_sockets += 1
        sock.lab_id = f"c{State.n_sockets}"
        sock.lab_port = sock.getsockname()[1]
        State.current = sock
        log("socket_bind", sock=sock.lab_id, local_ip=source_ip, local_port=sock.lab_port,
            peer=f"{host}:{port}", connect_timeout_s=sock.gettimeout())
        t0 = time.monotonic()
        try:
            sock.connect(sa)
        except OSError as exc:
            log("socket_connect_error", sock=sock.lab_id, local_port=sock.lab_port,
                errno=getattr(exc, "errno", None), exc=type(exc).__name__, error=str(exc),
                elapsed_ms=round((time.monotonic() - t0) * 1000, 1))
            sock.close()
            raise
        log("socket_connect", sock=sock.lab_id, local_port=sock.lab_port,
            elapsed_ms=round((time.monotonic() - t0) * 1000, 1))
        return sock

    return create_connection


def root_cause(exc: BaseException) -> BaseException:
    """Innermost exception: follow wrapped reasons (requests -> urllib3 -> OSError)."""
    seen = set()
    cur = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)), None)
        if not isinstance(nxt, BaseException):
            nxt = cur.__cause__ or cur.__context__
        if not isinstance(nxt, BaseException):
            break
        cur = nxt
    return cur


def do_request(session: requests.Session, rid: str, method: str, url: str, timeout, **kw):
    before = State.n_sockets
    cur = State.current
    log("request_start", id=rid, method=method, url=url,
        pooled_socket=cur.lab_id if cur is not None and cur.fileno() >= 0 else None,
        connect_timeout_s=timeout[0], read_timeout_s=timeout[1],
        body_bytes=len(kw["data"]) if "data" in kw else 0)
    t0 = time.monotonic()
    try:
        resp = session.request(method, url, timeout=timeout, headers={"x-lab-req": rid}, **kw)
    except Exception as exc:  # noqa: BLE001 - we log whatever the library raises
        sock = State.current
        cause = root_cause(exc)
        log("request_error", id=rid, sock=sock.lab_id if sock else None,
            local_port=sock.lab_port if sock else None, reused=State.n_sockets == before,
            exc=f"{type(exc).__module__}.{type(exc).__name__}", error=str(exc),
            cause=f"{type(cause).__module__}.{type(cause).__name__}", cause_text=str(cause),
            errno=getattr(cause, "errno", None),
            elapsed_ms=round((time.monotonic() - t0) * 1000, 1))
        return None
    sock = State.current
    log("response", id=rid, sock=sock.lab_id if sock else None,
        local_port=sock.lab_port if sock else None, reused=State.n_sockets == before,
        status=resp.status_code, connection=resp.headers.get("connection", ""),
        body_bytes=len(resp.content), elapsed_ms=round((time.monotonic() - t0) * 1000, 1))
    return resp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source-ip", required=True)
    p.add_argument("--mode", choices=["keepalive", "get", "upload"], default="keepalive")
    p.add_argument("--idle", type=float, default=6.0, help="keepalive: seconds between the two requests")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--read-timeout", type=float, default=8.0)
    p.add_argument("--body-bytes", type=int, default=2_000_000)
    args = p.parse_args(argv)

    u3conn.create_connection = make_create_connection(args.source_ip)
    # urllib3.connection imported the module, not the function: the patch above is seen.
    base = f"http://{args.host}:{args.port}"
    timeout = (args.connect_timeout, args.read_timeout)
    log("client_start", mode=args.mode, base=base, source_ip=args.source_ip,
        python=platform.python_version(), requests=requests.__version__, urllib3=urllib3.__version__,
        connect_timeout_s=args.connect_timeout, read_timeout_s=args.read_timeout,
        idle_s=args.idle if args.mode == "keepalive" else None,
        body_bytes=args.body_bytes if args.mode == "upload" else None, pid=os.getpid())
    with requests.Session() as s:
        if args.mode == "keepalive":
            r1 = do_request(s, "r1", "GET", f"{base}/health", timeout)
            if r1 is not None:
                log("idle_start", seconds=args.idle)
                time.sleep(args.idle)
                log("idle_end")
                do_request(s, "r2", "GET", f"{base}/health", timeout)
        elif args.mode == "get":
            do_request(s, "r1", "GET", f"{base}/health", timeout)
        else:
            do_request(s, "r1", "POST", f"{base}/upload", timeout,
                       data=b"x" * args.body_bytes)
    log("client_end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
