"""Path-lab client: Python `requests` (urllib3) over a real kernel TCP stack.

Runs inside the ssc-client network namespace (lab/record_paths.sh). One log line per
event, same format as the other lab programs:
    <ISO-8601 UTC, microseconds> client <event> key=value ...

Modes
  keepalive  GET /health, idle --idle seconds, GET /health again on the same pooled
             (keep-alive) connection of one requests.Session
  get        one GET /health (connect failures: refused, SYN black hole)
  upload     one POST /upload with a --body-bytes body (a server that never reads)
  probe      (dead-peer) TCP keep-alive on the socket, set by the client itself through
             urllib3's socket_options (SO_KEEPALIVE, TCP_KEEPIDLE --keepidle,
             TCP_KEEPINTVL --keepintvl, TCP_KEEPCNT --keepcnt); one GET /health, then the
             pooled socket stays idle and is watched (select + TCP_INFO every 20 ms) for at
             most --watch seconds: each keep-alive probe the kernel sends (tcpi_probes),
             and the error the kernel reports when it gives up (recv -> ETIMEDOUT)
  concurrent (server-killed) --parallel threads, each with its own requests.Session
             (its own connection), POST --path at the same moment; with --pipelined one
             more connection from a plain socket that sends POST --path, then a second
             request pipelined behind it (headers, then its --pipelined-body-bytes body
             0.3 s later): HTTP/1.1 pipelining, which uvicorn answers by pausing its
             reads, so the body stays unread in the server's receive queue

The only instrumentation: urllib3's create_connection is replaced by an equivalent that
binds the socket to (--source-ip, 0) before connect(), so the local port is known and
logged even when connect() fails, and the socket class logs its own close() together
with the kernel's TCP_INFO at that moment. Nothing else about the requests/urllib3
behaviour (timeouts, retries = requests' defaults, pooling) is changed.

usage: python lab/paths/client.py --host 198.18.2.2 --port 8401 --source-ip 198.18.1.2
                                  [--mode keepalive|get|upload|probe|concurrent] [--idle 6]
                                  [--connect-timeout 5] [--read-timeout 8] [--body-bytes N]
                                  [--keepidle 2 --keepintvl 1 --keepcnt 3 --watch 20]
                                  [--parallel 3 --path '/exec?seconds=10' --pipelined
                                   --pipelined-body-bytes 4096]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import select
import socket
import struct
import sys
import threading
import time

import requests
import urllib3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server"))
from lablog import log as _log  # noqa: E402  (the lab's one log-line format)
import urllib3.util.connection as u3conn


_LOG_LOCK = threading.Lock()   # one line at a time (mode concurrent logs from several threads)


def log(event: str, **fields) -> None:
    with _LOG_LOCK:
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


def keepalive_opts(sock: socket.socket) -> dict:
    """The socket's TCP keep-alive settings as the kernel reports them (getsockopt)."""
    return {"so_keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "tcp_keepidle_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "tcp_keepintvl_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "tcp_keepcnt": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)}


class _State(threading.local):
    """Per thread (mode concurrent runs one requests.Session per thread): the sockets this
    thread's session made and the latest one (the one a pooled request will reuse)."""

    def __init__(self):
        self.n_sockets = 0
        self.current: "LoggedSocket | None" = None


State = _State()
_SOCK_IDS = itertools.count(1)   # c1, c2, ... over all threads


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
        sock.lab_id = f"c{next(_SOCK_IDS)}"
        sock.lab_port = sock.getsockname()[1]
        State.current = sock
        log("socket_bind", sock=sock.lab_id, local_ip=source_ip, local_port=sock.lab_port,
            peer=f"{host}:{port}", connect_timeout_s=sock.gettimeout())
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE):
            log("socket_keepalive", sock=sock.lab_id, local_port=sock.lab_port, **keepalive_opts(sock))
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


class KeepAliveAdapter(requests.adapters.HTTPAdapter):
    """requests' HTTPAdapter with TCP keep-alive in urllib3's socket_options (the usual way
    to switch it on from requests): urllib3's defaults (TCP_NODELAY) plus SO_KEEPALIVE and
    the three timers."""

    def __init__(self, keepidle: int, keepintvl: int, keepcnt: int):
        self._opts = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
                      (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepidle),
                      (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepintvl),
                      (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepcnt)]
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = urllib3.connection.HTTPConnection.default_socket_options + self._opts
        return super().init_poolmanager(*args, **kwargs)


def watch_idle(sock: "LoggedSocket", seconds: float) -> None:
    """Watch an idle pooled socket without touching its data: log every change of the
    kernel's keep-alive probe counter (TCP_INFO tcpi_probes) and, when the socket becomes
    readable, what a MSG_PEEK recv says (data, EOF, or the error the kernel set)."""
    last = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = tcp_info(sock)
        if info.get("tcpi_probes") != last:
            log("keepalive_probes", sock=sock.lab_id, local_port=sock.lab_port, **info)
            last = info.get("tcpi_probes")
        r, _, x = select.select([sock], [], [sock], 0.02)
        if not (r or x):
            continue
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        except OSError as exc:
            log("socket_error", sock=sock.lab_id, local_port=sock.lab_port, errno=exc.errno,
                exc=type(exc).__name__, error=str(exc), **tcp_info(sock))
            return
        log("socket_eof" if not data else "socket_data", sock=sock.lab_id, local_port=sock.lab_port,
            **tcp_info(sock))
        return
    log("watch_end", sock=sock.lab_id, local_port=sock.lab_port, seconds=seconds, **tcp_info(sock))


def pipelined_conn(host: str, port: int, source_ip: str, path: str, rid: str, rid2: str,
                   body_bytes: int, timeout: float) -> None:
    """One connection from a plain socket: POST path, then a second POST pipelined behind it
    (HTTP/1.1 allows it), its body 0.3 s after its headers. Logs what it sends and reads."""
    sock = make_create_connection(source_ip)((host, port), timeout=timeout)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: lab-pipelined-socket\r\n"
            f"x-lab-req: {rid}\r\nContent-Length: 0\r\n\r\n").encode()
    t0 = time.monotonic()
    log("request_start", id=rid, method="POST", url=f"http://{host}:{port}{path}", pooled_socket=None,
        connect_timeout_s=timeout, read_timeout_s=timeout, body_bytes=0, client="plain socket")
    sock.sendall(head)
    log("raw_send", id=rid, sock=sock.lab_id, local_port=sock.lab_port, bytes=len(head), what="request")
    time.sleep(0.3)
    head2 = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: lab-pipelined-socket\r\n"
             f"x-lab-req: {rid2}\r\nContent-Length: {body_bytes}\r\n\r\n").encode()
    t1 = time.monotonic()
    log("request_start", id=rid2, method="POST", url=f"http://{host}:{port}{path}", pooled_socket=sock.lab_id,
        connect_timeout_s=timeout, read_timeout_s=timeout, body_bytes=body_bytes, client="plain socket",
        pipelined_behind=rid)
    sock.sendall(head2)
    log("raw_send", id=rid2, sock=sock.lab_id, local_port=sock.lab_port, bytes=len(head2), what="headers")
    time.sleep(0.3)
    sock.sendall(b"y" * body_bytes)
    log("raw_send", id=rid2, sock=sock.lab_id, local_port=sock.lab_port, bytes=body_bytes, what="body")
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        err = None
    except OSError as exc:
        err = exc
    now = time.monotonic()
    for r, t in ((rid, t0), (rid2, t1)):
        if err is not None:
            log("request_error", id=r, sock=sock.lab_id, local_port=sock.lab_port, reused=r == rid2,
                exc=f"builtins.{type(err).__name__}", error=str(err), cause=f"builtins.{type(err).__name__}",
                cause_text=str(err), errno=err.errno, received_bytes=len(got),
                elapsed_ms=round((now - t) * 1000, 1))
        else:
            log("request_error", id=r, sock=sock.lab_id, local_port=sock.lab_port, reused=r == rid2,
                exc="EOF", error="connection closed by the peer (recv returned 0) with no response",
                cause="EOF", cause_text="recv returned 0", errno=None, received_bytes=len(got),
                elapsed_ms=round((now - t) * 1000, 1))
    sock.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source-ip", required=True)
    p.add_argument("--mode", choices=["keepalive", "get", "upload", "probe", "concurrent"], default="keepalive")
    p.add_argument("--idle", type=float, default=6.0, help="keepalive: seconds between the two requests")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--read-timeout", type=float, default=8.0)
    p.add_argument("--body-bytes", type=int, default=2_000_000)
    p.add_argument("--keepidle", type=int, default=2, help="probe: TCP_KEEPIDLE (s)")
    p.add_argument("--keepintvl", type=int, default=1, help="probe: TCP_KEEPINTVL (s)")
    p.add_argument("--keepcnt", type=int, default=3, help="probe: TCP_KEEPCNT")
    p.add_argument("--watch", type=float, default=20.0, help="probe: watch the idle socket at most this long")
    p.add_argument("--parallel", type=int, default=3, help="concurrent: connections (threads)")
    p.add_argument("--path", default="/exec?seconds=10", help="concurrent: POST target")
    p.add_argument("--pipelined", action="store_true", help="concurrent: one more connection, pipelined")
    p.add_argument("--pipelined-body-bytes", type=int, default=4096)
    args = p.parse_args(argv)

    u3conn.create_connection = make_create_connection(args.source_ip)
    # urllib3.connection imported the module, not the function: the patch above is seen.
    base = f"http://{args.host}:{args.port}"
    timeout = (args.connect_timeout, args.read_timeout)
    log("client_start", mode=args.mode, base=base, source_ip=args.source_ip,
        python=platform.python_version(), requests=requests.__version__, urllib3=urllib3.__version__,
        connect_timeout_s=args.connect_timeout, read_timeout_s=args.read_timeout,
        idle_s=args.idle if args.mode == "keepalive" else None,
        body_bytes=args.body_bytes if args.mode == "upload" else None, pid=os.getpid(),
        **({"keepidle_s": args.keepidle, "keepintvl_s": args.keepintvl, "keepcnt": args.keepcnt,
            "watch_s": args.watch} if args.mode == "probe" else {}),
        **({"parallel": args.parallel, "path": args.path, "pipelined": args.pipelined,
            "pipelined_body_bytes": args.pipelined_body_bytes} if args.mode == "concurrent" else {}))
    if args.mode == "concurrent":
        return run_concurrent(args, base, timeout)
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
        elif args.mode == "probe":
            s.mount("http://", KeepAliveAdapter(args.keepidle, args.keepintvl, args.keepcnt))
            r1 = do_request(s, "r1", "GET", f"{base}/health", timeout)
            if r1 is not None and State.current is not None:
                log("idle_start", seconds=args.watch, note="watching the pooled socket")
                watch_idle(State.current, args.watch)
        else:
            do_request(s, "r1", "POST", f"{base}/upload", timeout,
                       data=b"x" * args.body_bytes)
    log("client_end")
    return 0


def run_concurrent(args, base: str, timeout) -> int:
    """--parallel sessions in threads, all released at once; plus the pipelined socket."""
    go = threading.Barrier(args.parallel + (1 if args.pipelined else 0))

    def one(i: int) -> None:
        with requests.Session() as s:
            go.wait(10)
            do_request(s, f"r{i}", "POST", f"{base}{args.path}", timeout, data=b"")

    threads = [threading.Thread(target=one, args=(i,), name=f"r{i}") for i in range(1, args.parallel + 1)]
    if args.pipelined:
        n = args.parallel + 1

        def piped() -> None:
            go.wait(10)
            pipelined_conn(args.host, args.port, args.source_ip, args.path, f"r{n}", f"r{n + 1}",
                           args.pipelined_body_bytes, args.read_timeout)
        threads.append(threading.Thread(target=piped, name="pipelined"))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    log("client_end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
