#!/usr/bin/env node
'use strict';
/*
 * Path-lab client in Node 20, built-ins only (node:http and the global fetch, i.e. the
 * undici bundled with Node), over a real kernel TCP stack in the ssc-client namespace
 * (lab/record_paths.sh). One log line per event, the lab's format:
 *     <ISO-8601 UTC, microseconds> client <event> key=value ...
 * with the same event names as lab/paths/client.py (socket_connect, request_start,
 * response, request_error, socket_close, ...), so lab/paths/make_truth.py reads both.
 *
 * Modes
 *   race     (keepalive-race) an http.Agent({keepAlive: true}); GET /health, then the
 *            same request again on the pooled socket --reuse-after-ms after the first
 *            response ended: timed to cross the server's keep-alive close on the wire.
 *   fetch    (undici-idle-close) --requests GET /health with fetch() one after another,
 *            then the process stays alive --linger-ms doing nothing; undici closes the idle
 *            pooled socket by itself (its keepAliveTimeout, 4 s by default).
 *   timeout  (node-http-timeout) --requests POST /exec with http.request on Node's
 *            http.globalAgent, each with req.setTimeout(--timeout-ms, () => req.destroy()).
 *
 * Observation only: sockets are instrumented where they are created (the agent's
 * createConnection; for undici the 'undici:client:connected' diagnostics channel): their
 * connect, data, the peer's FIN ('end'), errors (code), close, and our own end()/destroy()
 * calls (wrappers that call straight through, logging the reason undici passes).
 *
 * usage: node lab/paths/nodeclient.js --mode race|fetch|timeout --host 198.18.2.2 --port P
 *             [--reuse-after-ms 1950] [--requests N] [--linger-ms 7000] [--timeout-ms 3000]
 *             [--path /exec] [--gap-ms 200]
 */

const http = require('http');
const dc = require('diagnostics_channel');
const { performance } = require('perf_hooks');
const { log } = require('../client/lablog');

function parseArgs(argv) {
  const o = { mode: 'race', host: '198.18.2.2', port: 8400, reuseAfterMs: 1950, requests: 1,
              lingerMs: 7000, timeoutMs: 3000, path: null, gapMs: 200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => { if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`); return argv[++i]; };
    switch (a) {
      case '--mode': o.mode = v(); break;
      case '--host': o.host = v(); break;
      case '--port': o.port = Number(v()); break;
      case '--reuse-after-ms': o.reuseAfterMs = Number(v()); break;
      case '--requests': o.requests = Number(v()); break;
      case '--linger-ms': o.lingerMs = Number(v()); break;
      case '--timeout-ms': o.timeoutMs = Number(v()); break;
      case '--path': o.path = v(); break;
      case '--gap-ms': o.gapMs = Number(v()); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!['race', 'fetch', 'timeout'].includes(o.mode)) throw new Error(`bad --mode ${o.mode}`);
  return o;
}

// ---------------------------------------------------------------- logging

const ms3 = (t0) => +(performance.now() - t0).toFixed(3);

// ---------------------------------------------------------------- sockets
const sockInfo = new WeakMap();
let sockSeq = 0;

function instrumentSocket(sock) {
  if (sockInfo.has(sock)) return sockInfo.get(sock);
  const info = { id: `c${++sockSeq}`, port: null, t0: performance.now(), last: performance.now(),
                 peerEnded: false, localClosed: null, requests: 0 };
  sockInfo.set(sock, info);
  const onConnect = () => {
    info.port = sock.localPort;
    info.last = performance.now();
    log('socket_connect', { sock: info.id, local_ip: sock.localAddress, local_port: info.port,
                            peer: `${sock.remoteAddress}:${sock.remotePort}`, elapsed_ms: ms3(info.t0) });
  };
  if (sock.connecting) sock.once('connect', onConnect); else onConnect();
  sock.on('data', (b) => {
    info.last = performance.now();
    log('socket_data', { sock: info.id, local_port: info.port, bytes: b.length });
  });
  sock.on('end', () => {
    info.peerEnded = true;
    log('socket_peer_fin', { sock: info.id, local_port: info.port, local_closed_before: Boolean(info.localClosed),
                             idle_ms: +(performance.now() - info.last).toFixed(3) });
  });
  sock.on('error', (err) => {
    log('socket_error', { sock: info.id, local_port: info.port, code: err.code || '', errno: err.errno ?? null,
                          error: err.message });
  });
  sock.on('close', (hadError) => {
    log('socket_close', { sock: info.id, local_port: info.port, had_error: hadError,
                          first_close: info.localClosed && !info.localClosedAfterPeer ? 'client'
                            : (info.peerEnded ? 'server' : 'unknown'),
                          local_close: info.localClosed || '-', idle_ms: +(performance.now() - info.last).toFixed(3) });
  });
  for (const name of ['end', 'destroy']) {
    const orig = sock[name];
    sock[name] = function labWrapped(...args) {
      if (!info.localClosed && !sock.destroyed) {
        info.localClosed = name;
        info.localClosedAfterPeer = info.peerEnded;
        const err = args[0] instanceof Error ? args[0] : null;
        log(`socket_local_${name}`, { sock: info.id, local_port: info.port, after_peer_fin: info.peerEnded,
                                      reason: err ? `${err.name}: ${err.message}` : null,
                                      idle_ms: +(performance.now() - info.last).toFixed(3) });
      }
      return orig.apply(this, args);
    };
  }
  return info;
}

function instrumentAgent(agent) {
  const orig = agent.createConnection;
  agent.createConnection = function labCreateConnection(...args) {
    const sock = orig.apply(this, args);
    if (sock) instrumentSocket(sock);
    return sock;
  };
  return agent;
}

// ---------------------------------------------------------------- node:http
function httpRequest(id, base, { method = 'GET', path = '/health', body = null, agent, timeoutMs = 0 }) {
  return new Promise((resolve) => {
    const url = `${base}${path}`;
    const headers = { 'x-lab-req': id };
    if (body !== null) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(body); }
    const t0 = performance.now();
    log('request_start', { id, lib: 'node:http', method, url, body_bytes: body ? Buffer.byteLength(body) : 0,
                           agent_keepalive: agent ? agent.keepAlive : null,
                           agent_timeout_ms: agent ? (agent.options.timeout ?? null) : null,
                           request_timeout_ms: timeoutMs || null });
    const req = http.request(url, { method, headers, agent });
    let info = null;
    let reused = false;
    let done = false;
    const finish = (event, fields) => { if (!done) { done = true; log(event, fields); resolve(fields); } };
    req.on('socket', (sock) => {
      info = instrumentSocket(sock);
      info.requests++;
      reused = Boolean(req.reusedSocket);
      const report = () => log('socket_assigned', { id, sock: info.id, local_port: sock.localPort, reused,
                                                    request_on_socket: info.requests });
      if (sock.connecting) sock.once('connect', report); else report();
    });
    req.on('finish', () => {
      if (info) info.last = performance.now();
      log('request_sent', { id, sock: info && info.id, local_port: info && info.port, elapsed_ms: ms3(t0) });
    });
    if (timeoutMs) {
      req.setTimeout(timeoutMs, () => {
        log('request_timeout', { id, sock: info && info.id, local_port: info && info.port, timeout_ms: timeoutMs,
                                 idle_ms: info ? +(performance.now() - info.last).toFixed(3) : null,
                                 action: 'req.destroy()' });
        req.destroy();
      });
    }
    req.on('response', (res) => {
      log('response_headers', { id, sock: info && info.id, local_port: info && info.port, status: res.statusCode,
                                connection: res.headers.connection || '', elapsed_ms: ms3(t0) });
      let n = 0;
      res.on('data', (b) => { n += b.length; });
      res.on('end', () => finish('response', {
        id, sock: info && info.id, local_port: info && info.port, reused, status: res.statusCode,
        connection: res.headers.connection || '', keep_alive: res.headers['keep-alive'] || '', body_bytes: n,
        elapsed_ms: ms3(t0) }));
    });
    req.on('error', (err) => finish('request_error', {
      id, sock: info && info.id, local_port: info && info.port, reused, exc: `Error(${err.code || ''})`,
      error: err.message, cause: err.code || '', cause_text: err.message, errno: err.code || null,
      elapsed_ms: ms3(t0) }));
    req.on('close', () => log('request_close', { id, sock: info && info.id, local_port: info && info.port }));
    req.end(body === null ? undefined : body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- fetch (undici)
const fetchReq = new WeakMap();   // undici request -> { id, t0 }
function subscribeUndici() {
  dc.subscribe('undici:client:connected', ({ socket }) => { instrumentSocket(socket); });
  dc.subscribe('undici:client:sendHeaders', ({ request, headers, socket }) => {
    const m = /x-lab-req:\s*(\S+)/i.exec(String(headers));
    const info = instrumentSocket(socket);
    info.requests++;
    info.last = performance.now();
    const id = m ? m[1] : null;
    fetchReq.set(request, { id, info });
    if (id) socketsById.set(id, info);
    log('socket_assigned', { id, sock: info.id, local_port: info.port, reused: info.requests > 1,
                             request_on_socket: info.requests });
    log('request_sent', { id, sock: info.id, local_port: info.port });
  });
  dc.subscribe('undici:request:headers', ({ request, response }) => {
    const r = fetchReq.get(request);
    if (r) log('response_headers', { id: r.id, sock: r.info.id, local_port: r.info.port, status: response.statusCode });
  });
  dc.subscribe('undici:request:trailers', ({ request }) => {
    const r = fetchReq.get(request);
    if (r) log('response_complete', { id: r.id, sock: r.info.id, local_port: r.info.port,
                                      note: 'undici: message complete, socket back in the pool' });
  });
}

async function fetchOne(id, url) {
  const t0 = performance.now();
  log('request_start', { id, lib: 'fetch (undici)', method: 'GET', url, body_bytes: 0 });
  let info = null;
  try {
    const res = await fetch(url, { headers: { 'x-lab-req': id } });
    const text = await res.text();
    info = lastSocketFor(id);
    log('response', { id, sock: info && info.id, local_port: info && info.port, reused: info ? info.requests > 1 : null,
                      status: res.status, connection: res.headers.get('connection') || '',
                      keep_alive: res.headers.get('keep-alive') || '', body_bytes: Buffer.byteLength(text),
                      elapsed_ms: ms3(t0) });
  } catch (err) {
    info = lastSocketFor(id);
    const c = err.cause || {};
    log('request_error', { id, sock: info && info.id, local_port: info && info.port, reused: null,
                           exc: err.name, error: err.message, cause: c.code || c.name || '', cause_text: c.message || '',
                           errno: c.code || null, elapsed_ms: ms3(t0) });
  }
}

const socketsById = new Map();   // lab id -> socket info (from sendHeaders)
function lastSocketFor(id) { return socketsById.get(id) || null; }

// ---------------------------------------------------------------- main
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const base = `http://${o.host}:${o.port}`;
  const common = { mode: o.mode, base, node: process.version, undici: process.versions.undici, pid: process.pid };
  if (o.mode === 'race') {
    const agent = instrumentAgent(new http.Agent({ keepAlive: true }));
    log('client_start', { ...common, lib: 'node:http', agent: 'new http.Agent({keepAlive: true})',
                          agent_keepalive_msecs: agent.keepAliveMsecs, reuse_after_ms: o.reuseAfterMs });
    const r1 = await httpRequest('r1', base, { agent });
    if (r1.status) {
      log('idle_start', { ms: o.reuseAfterMs, note: 'after the end of the first response' });
      await sleep(o.reuseAfterMs);
      log('idle_end', { free_sockets: Object.values(agent.freeSockets).reduce((n, l) => n + l.length, 0) });
      await httpRequest('r2', base, { agent });
    }
    await sleep(500);
    agent.destroy();
  } else if (o.mode === 'fetch') {
    subscribeUndici();
    log('client_start', { ...common, lib: 'fetch (undici, Node built-in)', requests: o.requests,
                          linger_ms: o.lingerMs, note: 'default global dispatcher: keepAliveTimeout 4000 ms' });
    for (let i = 1; i <= o.requests; i++) {
      if (i > 1) await sleep(o.gapMs);
      await fetchOne(`r${i}`, `${base}/health`);
    }
    log('idle_start', { ms: o.lingerMs, note: 'process stays alive, no request outstanding' });
    await sleep(o.lingerMs);
    log('idle_end');
  } else {
    const agent = instrumentAgent(http.globalAgent);
    log('client_start', { ...common, lib: 'node:http', agent: 'http.globalAgent',
                          agent_keepalive: agent.keepAlive, agent_timeout_ms: agent.options.timeout ?? null,
                          request_timeout_ms: o.timeoutMs, requests: o.requests });
    const path = o.path || '/exec';
    const body = JSON.stringify({ lang: 'py', code: 'import time; time.sleep(10)' });
    for (let i = 1; i <= o.requests; i++) {
      if (i > 1) await sleep(o.gapMs);
      await httpRequest(`r${i}`, base, { method: 'POST', path, body, agent, timeoutMs: o.timeoutMs });
    }
    await sleep(300);
  }
  log('client_end');
}

main().catch((err) => { log('client_crash', { error: err.stack || String(err) }); process.exitCode = 1; });
