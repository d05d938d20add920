"""Lab server: a stand-in for the code-execution service from the incident.

Endpoints
  GET  /files/{session_id}   small JSON listing; with --fix the response carries
                             ``Connection: close`` so the client cannot put the socket
                             back into its keep-alive pool (the mitigation that shipped).
  POST /exec                 waits N seconds (asyncio.sleep, default 10) and answers JSON;
                             ``?seconds=`` overrides N per request.  With --heartbeat the
                             response starts at once and a single space is streamed every
                             2 s until the JSON follows, so the socket is never idle long
                             enough for a client-side inactivity timer to fire.
  GET  /health               tiny JSON, used by the client's "fast requests".

Every log line starts with an ISO-8601 UTC timestamp (microseconds) and carries the
client's TCP port, so the lab's truth.json can be derived from the logs alone.

Run:  python lab/server/app.py --port 8100 [--fix] [--heartbeat] [--exec-seconds 10]
                               [--keep-alive-timeout 5] [--host 127.0.0.1|::1]
                               [--tls-cert cert.pem --tls-key key.pem]   (HTTPS)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script or loaded by path
from lablog import log, utc_now  # noqa: E402,F401


def _peer(request: Request) -> tuple[str, int | None]:
    client = request.client
    return (client.host, client.port) if client else ("-", None)


def _target(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


async def _watch_disconnect(request: Request, port, target) -> float | None:
    """Block until the ASGI server reports http.disconnect, log it, return monotonic time.

    By the time this runs the request body has been read, so uvicorn's receive() only
    returns when the connection is lost (or the response completed, which we never
    reach while this task is alive: it is cancelled first).
    """
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            log("client_disconnected", client_port=port, target=target)
            return time.monotonic()


class RequestLogMiddleware:
    """Pure ASGI logging middleware.

    Deliberately not Starlette's BaseHTTPMiddleware: that one wraps receive() and runs
    the endpoint in a separate task, which changes how a client disconnect reaches the
    endpoint. Here receive/send pass straight through; we only peek at them.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host, port = scope.get("client") or ("-", None)
        target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        log("request", client_ip=host, client_port=port, method=scope["method"], target=target,
            user_agent=headers.get("user-agent", ""), lab_id=headers.get("x-lab-req", ""))

        async def logging_send(message):
            if message["type"] == "http.response.start":
                resp_headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                                for k, v in message.get("headers", [])}
                log("response_start", client_port=port, method=scope["method"], target=target,
                    status=message["status"], connection=resp_headers.get("connection", ""))
            await send(message)

        await self.app(scope, receive, logging_send)


def create_app(
    fix: bool = False,
    heartbeat: bool = False,
    exec_seconds: float = 10.0,
    heartbeat_interval: float = 2.0,
) -> FastAPI:
    app = FastAPI(title="sockscope lab server")
    app.state.lab = {
        "fix": fix,
        "heartbeat": heartbeat,
        "exec_seconds": exec_seconds,
        "heartbeat_interval": heartbeat_interval,
    }

    app.add_middleware(RequestLogMiddleware)

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.get("/files/{session_id}")
    async def list_files(session_id: str, request: Request, detail: str | None = None):
        files = [{"id": f"{session_id}-f1", "name": "input.txt", "size": 2048}]
        if detail == "full":
            files[0].update({"path": f"/mnt/data/{session_id}/input.txt", "mime": "text/plain"})
        headers = {}
        if app.state.lab["fix"]:
            # The mitigation: refuse keep-alive on this endpoint. The client's agent then
            # destroys the socket after the response instead of pooling it, so the next
            # request (the long POST /exec) starts on a fresh connection that carries no
            # idle timer left behind by an earlier request.
            headers["Connection"] = "close"
        return JSONResponse({"session_id": session_id, "files": files}, headers=headers)

    @app.post("/exec")
    async def execute(request: Request, seconds: float | None = None):
        cfg = app.state.lab
        duration = cfg["exec_seconds"] if seconds is None else seconds
        body = await request.body()  # read it all before watching for disconnect
        host, port = _peer(request)
        target = _target(request)
        started = time.monotonic()
        watcher = asyncio.create_task(_watch_disconnect(request, port, target))
        log("exec_start", client_port=port, seconds=duration, body_bytes=len(body),
            heartbeat=cfg["heartbeat"])

        def result() -> dict:
            return {"exit_code": 0, "stdout": "done\n", "elapsed_s": round(time.monotonic() - started, 6)}

        def finish() -> bool:
            disconnected = watcher.done() and watcher.result() is not None
            if not watcher.done():
                watcher.cancel()
            log("exec_end", client_port=port, target=target, exit_code=0,
                elapsed_s=round(time.monotonic() - started, 6),
                client_disconnected=disconnected)
            return disconnected

        if not cfg["heartbeat"]:
            await asyncio.sleep(duration)
            finish()
            # If the client is gone uvicorn drops this response silently (no bytes sent):
            # the same "server completed, nobody listening" picture as the incident.
            return result()

        interval = cfg["heartbeat_interval"]

        async def stream():
            # Whitespace before a JSON document is still valid JSON, so a client that
            # parses the whole body is unaffected, but each space is payload on the
            # wire and resets every inactivity timer along the path.
            deadline = started + duration
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(interval, remaining))
                if time.monotonic() < deadline:
                    log("heartbeat", client_port=port)
                    yield b" "
            finish()
            yield json.dumps(result()).encode()

        return StreamingResponse(stream(), media_type="application/json")

    return app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--fix", action="store_true", help="answer GET /files with Connection: close")
    parser.add_argument("--heartbeat", action="store_true", help="stream a space every 2 s during /exec")
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    parser.add_argument("--exec-seconds", type=float, default=10.0)
    parser.add_argument("--keep-alive-timeout", type=int, default=5,
                        help="uvicorn timeout_keep_alive: idle keep-alive connections are closed by the server after this many seconds (uvicorn default 5)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS (uvicorn ssl_certfile)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (uvicorn ssl_keyfile)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    import uvicorn

    app = create_app(fix=args.fix, heartbeat=args.heartbeat, exec_seconds=args.exec_seconds,
                     heartbeat_interval=args.heartbeat_interval)
    log("server_start", host=args.host, port=args.port, fix=args.fix, heartbeat=args.heartbeat,
        exec_seconds=args.exec_seconds, keep_alive_timeout=args.keep_alive_timeout,
        uvicorn=uvicorn.__version__, tls=bool(args.tls_cert))
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else {}
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="h11",  # pure-Python parser: same behaviour whether or not httptools is installed
        loop="asyncio",
        timeout_keep_alive=args.keep_alive_timeout,
        access_log=False,  # our own log lines carry the client port and timestamp
        log_level="warning",
        **tls,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
