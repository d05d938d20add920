#!/usr/bin/env node
'use strict';
/*
 * Lab client for the "socket hang up after 5.000 s" incident.
 *
 * One session mirrors what the chat backend did for a code run with an attached file:
 *   1. axios      GET  /files/{id}              (axios option timeout: --axios-timeout)
 *   2. (think time, --think-ms)
 *   3. node-fetch GET  /files/{id}?detail=full  (no timeout)
 *   4. node-fetch POST /exec                    (no timeout; the server takes ~10 s)
 * All three go through the same agent (by default Node's http.globalAgent, exactly as
 * when neither library is given an agent), so a keep-alive socket is reused.
 *
 * Everything observable is logged, one event per line, each line starting with an
 * ISO-8601 UTC timestamp (microseconds), so truth.json can be built from this log:
 * the local port of every request, whether the socket was reused, the socket's idle
 * timer when it was handed over, timer firings with the listeners that react to them,
 * who closed the socket, and the error text the caller sees.
 *
 * See ../README.md for why the socket dies at 5 s with the pinned versions.
 *
 * --https speaks HTTPS to the same endpoints: both libraries then fall back to Node's
 * https.globalAgent (keepAlive, timeout 5000 in Node 20, like http.globalAgent). The
 * certificate is trusted through NODE_EXTRA_CA_CERTS (set by record.sh) and the TLS
 * secrets are written by `node --tls-keylog=FILE`. --servername NAME puts NAME in the
 * TLS SNI (set on the agent's options; it changes nothing about timers or pooling).
 */

const http = require('http');
const https = require('https');
const dc = require('diagnostics_channel');
const { performance } = require('perf_hooks');
const { log } = require('./lablog');
const axios = require('axios');
const fetch = require('node-fetch');

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const opts = {
    sessions: 1,
    axiosTimeout: 5000,
    agent: 'global',
    agentTimeout: null,
    port: 8100,
    host: '127.0.0.1',
    extra: false,
    noAxios: false,
    axiosMaxRedirects: null,
    thinkMs: 1000,
    sessionGapMs: 500,
    lingerMs: 0,
    https: false,
    servername: null,
  };
  const take = (i) => {
    if (i + 1 >= argv.length) throw new Error(`missing value for ${argv[i]}`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--sessions': opts.sessions = Number(take(i)); i++; break;
      case '--axios-timeout': opts.axiosTimeout = Number(take(i)); i++; break;
      case '--agent': opts.agent = take(i); i++; break;
      case '--agent-timeout': opts.agentTimeout = Number(take(i)); i++; break;
      case '--port': opts.port = Number(take(i)); i++; break;
      case '--host': opts.host = take(i); i++; break;
      case '--extra': opts.extra = true; break;
      case '--no-axios': opts.noAxios = true; break;
      case '--axios-max-redirects': opts.axiosMaxRedirects = Number(take(i)); i++; break;
      case '--think-ms': opts.thinkMs = Number(take(i)); i++; break;
      case '--session-gap-ms': opts.sessionGapMs = Number(take(i)); i++; break;
      case '--linger-ms': opts.lingerMs = Number(take(i)); i++; break;
      case '--https': opts.https = true; break;
      case '--servername': opts.servername = take(i); i++; break;
      case '-h': case '--help':
        process.stdout.write(
          'usage: node client.js [--sessions N] [--axios-timeout MS (0 = none)]\n' +
          '         [--agent global|keepalive|fresh] [--agent-timeout MS (keepalive only)]\n' +
          '         [--port P] [--host 127.0.0.1|::1] [--extra] [--think-ms MS]\n' +
          '         [--session-gap-ms MS] [--linger-ms MS] [--no-axios] [--axios-max-redirects N]\n' +
          '         [--https [--servername NAME]]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (!['global', 'keepalive', 'fresh'].includes(opts.agent)) throw new Error(`bad --agent ${opts.agent}`);
  if (opts.servername && !opts.https) throw new Error('--servername needs --https');
  opts.mod = opts.https ? https : http;   // the module whose Agent (and globalAgent) is used
  return opts;
}

// ---------------------------------------------------------------- logging

// ---------------------------------------------------------------- socket instrumentation
// We only observe: listeners we add do nothing but log, and the wrappers around
// end()/destroy() call straight through. They let the log say which side closed first.
const sockInfo = new WeakMap();
let sockSeq = 0;

function labelListeners(sock) {
  return sock.listeners('timeout').map((f) => {
    if (f === sock.destroy || f === sock._labOrigDestroy) return 'socket.destroy';
    if (f.name === 'labTimeoutLogger') return null;
    return f.name || 'anonymous';
  }).filter(Boolean);
}

function instrumentSocket(sock) {
  if (sockInfo.has(sock)) return sockInfo.get(sock);
  const info = { id: ++sockSeq, port: null, lastActivity: performance.now(), peerEnded: false,
                 localClosed: null, requests: 0 };
  sockInfo.set(sock, info);

  const onConnected = () => {
    info.port = sock.localPort;
    info.lastActivity = performance.now();
    log('socket_connect', { sock: info.id, local_port: info.port, remote: `${sock.remoteAddress}:${sock.remotePort}`,
                            socket_timeout_ms: sock.timeout || 0 });
  };
  if (sock.connecting) sock.once('connect', onConnected); else onConnected();

  sock.on('data', () => { info.lastActivity = performance.now(); });
  sock.on('timeout', function labTimeoutLogger() {
    log('socket_timeout', {
      sock: info.id, local_port: info.port, timeout_ms: sock.timeout,
      idle_ms: +(performance.now() - info.lastActivity).toFixed(3),
      in_use: Boolean(sock._httpMessage && !sock._httpMessage.destroyed),
      timeout_listeners: labelListeners(sock),
    });
  });
  sock.on('end', () => {
    info.peerEnded = true;
    log('socket_peer_fin', { sock: info.id, local_port: info.port, local_closed_before: Boolean(info.localClosed) });
  });
  sock.on('close', (hadError) => {
    log('socket_close', {
      sock: info.id, local_port: info.port, had_error: hadError,
      // who closed first as far as this process can tell: our end()/destroy() before
      // the peer's FIN was read -> client; the peer's FIN read first -> server.
      first_close: info.localClosed && !info.localClosedAfterPeer ? 'client' : (info.peerEnded ? 'server' : 'unknown'),
      local_close: info.localClosed || '-',
    });
  });

  const origEnd = sock.end;
  sock.end = function labEnd(...args) {
    if (!info.localClosed && !sock.destroyed) {
      info.localClosed = 'end';
      info.localClosedAfterPeer = info.peerEnded;
      log('socket_local_end', { sock: info.id, local_port: info.port, after_peer_fin: info.peerEnded });
    }
    return origEnd.apply(this, args);
  };
  const origDestroy = sock.destroy;
  sock._labOrigDestroy = origDestroy;
  sock.destroy = function labDestroy(...args) {
    if (!info.localClosed && !sock.destroyed) {
      info.localClosed = 'destroy';
      info.localClosedAfterPeer = info.peerEnded;
      log('socket_local_destroy', {
        sock: info.id, local_port: info.port, after_peer_fin: info.peerEnded,
        idle_ms: +(performance.now() - info.lastActivity).toFixed(3),
        in_use: Boolean(sock._httpMessage && !sock._httpMessage.destroyed),
      });
    }
    return origDestroy.apply(this, args);
  };
  return info;
}

// Sockets are instrumented where the agent creates them (before any library code
// sees them), so our end()/destroy() wrappers are the ones that later callers capture.
function instrumentAgent(agent) {
  if (agent._labInstrumented) return agent;
  const orig = agent.createConnection;
  agent.createConnection = function labCreateConnection(...args) {
    const sock = orig.apply(this, args);
    if (sock) instrumentSocket(sock);
    return sock;
  };
  agent._labInstrumented = true;
  return agent;
}

// Every ClientRequest (axios goes through follow-redirects, which makes a native
// ClientRequest underneath; node-fetch makes one directly) is announced on this
// channel. Node 20 publishes it from ClientRequest.prototype._finish, i.e. once the
// request has been ended, by which time a socket is normally attached already.
const reqMeta = new Map(); // lab id -> { sockInfo }
dc.subscribe('http.client.request.start', ({ request }) => {
  let labId = request.getHeader('x-lab-req');
  if (Array.isArray(labId)) labId = labId[0]; // node-fetch stores header values as arrays
  const meta = reqMeta.get(labId) || {};
  reqMeta.set(labId, meta);
  const onSocket = (sock) => {
    const info = instrumentSocket(sock);
    info.requests++;
    info.lastActivity = performance.now();
    meta.sockInfo = info;
    const report = () => {
      log('socket_assigned', {
        id: labId, sock: info.id, local_port: sock.localPort, reused: Boolean(request.reusedSocket),
        request_on_socket: info.requests, socket_timeout_ms: sock.timeout || 0,
        timeout_listeners: labelListeners(sock),
      });
    };
    if (sock.connecting) sock.once('connect', report); else report();
  };
  if (request.socket) onSocket(request.socket); else request.once('socket', onSocket);
  request.on('finish', () => { if (meta.sockInfo) meta.sockInfo.lastActivity = performance.now(); });
});

// ---------------------------------------------------------------- agents
function makeAgent(opts) {
  // 'global': pass no agent at all, exactly like the incident's code; both libraries
  // then fall back to Node's http.globalAgent (https.globalAgent with --https).
  if (opts.agent === 'global') return undefined;
  if (opts.agent === 'keepalive') {
    const o = { keepAlive: true };
    if (opts.agentTimeout) o.timeout = opts.agentTimeout;
    return instrumentAgent(new opts.mod.Agent(o));
  }
  return instrumentAgent(new opts.mod.Agent({ keepAlive: false }));
}

// ---------------------------------------------------------------- requests
let reqSeq = 0;
function nextId(tag) { reqSeq++; return `${tag}-${reqSeq}`; }

function portOf(id) {
  const m = reqMeta.get(id);
  return m && m.sockInfo ? m.sockInfo.port : null;
}

function errText(err) {
  // node-fetch wraps the socket error; axios keeps the cause in err.cause / err.code.
  return err && err.message ? err.message : String(err);
}

async function viaAxios(id, session, step, url, { timeout, agent, maxRedirects }) {
  reqMeta.set(id, {});
  const cfg = { headers: { 'x-lab-req': id } };
  if (timeout) cfg.timeout = timeout;
  // maxRedirects 0 makes axios call Node's http.request itself instead of going
  // through follow-redirects (lib/adapters/http.js picks the transport on it).
  if (maxRedirects !== null && maxRedirects !== undefined) cfg.maxRedirects = maxRedirects;
  if (agent) { cfg.httpAgent = agent; cfg.httpsAgent = agent; }   // axios picks by the URL's scheme
  const t = performance.now();
  log('request_start', { id, session, step, lib: 'axios', method: 'GET', url, axios_timeout_ms: timeout || 0 });
  try {
    const res = await axios.get(url, cfg);
    log('response', { id, session, step, lib: 'axios', local_port: portOf(id), status: res.status,
                      connection: res.headers.connection || '', elapsed_ms: +(performance.now() - t).toFixed(3) });
    return res.data;
  } catch (err) {
    log('request_error', { id, session, step, lib: 'axios', local_port: portOf(id), code: err.code || '',
                           error: errText(err), elapsed_ms: +(performance.now() - t).toFixed(3) });
    return null;
  }
}

async function viaFetch(id, session, step, url, { method = 'GET', body, agent }) {
  reqMeta.set(id, {});
  const init = { method, headers: { 'x-lab-req': id } };
  if (body !== undefined) { init.body = body; init.headers['content-type'] = 'application/json'; }
  if (agent) init.agent = agent;
  const t = performance.now();
  log('request_start', { id, session, step, lib: 'node-fetch', method, url });
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    log('response', { id, session, step, lib: 'node-fetch', local_port: portOf(id), status: res.status,
                      connection: res.headers.get('connection') || '', body_bytes: Buffer.byteLength(text),
                      elapsed_ms: +(performance.now() - t).toFixed(3) });
    return text;
  } catch (err) {
    log('request_error', { id, session, step, lib: 'node-fetch', local_port: portOf(id),
                           code: err.code || err.errno || '', error: errText(err),
                           elapsed_ms: +(performance.now() - t).toFixed(3) });
    return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function session(n, base, opts, agent) {
  const sid = `sess${n}`;
  log('session_start', { session: n });
  if (!opts.noAxios) {
    await viaAxios(nextId(`s${n}-axios-files`), n, 'axios_files', `${base}/files/${sid}`,
                   { timeout: opts.axiosTimeout, agent, maxRedirects: opts.axiosMaxRedirects });
    await sleep(opts.thinkMs);
  }
  await viaFetch(nextId(`s${n}-fetch-files`), n, 'fetch_files_detail', `${base}/files/${sid}?detail=full`, { agent });
  const body = JSON.stringify({ session_id: sid, lang: 'py', code: 'import time; time.sleep(10); print("done")' });
  const out = await viaFetch(nextId(`s${n}-fetch-exec`), n, 'fetch_exec', `${base}/exec`, { method: 'POST', body, agent });
  log('session_end', { session: n, ok: out !== null });
}

// Healthy traffic beside the sessions, each on its own agent so it cannot borrow
// (or lend) a socket from the sessions' pool:
//  - fast requests on one keep-alive socket (agent without idle timer) which is then
//    left idle until the server's keep-alive timeout closes it;
//  - a long /exec on a fresh, non-pooled socket that is answered in time.
async function extraTraffic(base, mod) {
  const idleAgent = instrumentAgent(new mod.Agent({ keepAlive: true }));
  const freshAgent = instrumentAgent(new mod.Agent({ keepAlive: false }));
  const fast = (async () => {
    for (let i = 0; i < 3; i++) {
      await viaFetch(nextId('x-fast'), 'extra', 'fast_health', `${base}/health`, { agent: idleAgent });
      await sleep(150);
    }
    await viaAxios(nextId('x-fast-axios'), 'extra', 'fast_files', `${base}/files/extra`, { timeout: 0, agent: idleAgent });
    log('extra_idle', { note: 'keep-alive socket left idle for the server to close' });
  })();
  const long = viaFetch(nextId('x-long'), 'extra', 'long_exec_fresh_socket', `${base}/exec`,
                        { method: 'POST', body: JSON.stringify({ session_id: 'extra' }), agent: freshAgent });
  await Promise.all([fast, long]);
  return [idleAgent, freshAgent];
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const base = `${opts.https ? 'https' : 'http'}://${hostPart}:${opts.port}`;
  if (opts.servername) opts.mod.globalAgent.options.servername = opts.servername;
  instrumentAgent(opts.mod.globalAgent);
  const agent = makeAgent(opts);
  if (agent && opts.servername) agent.options.servername = opts.servername;
  const effectiveAgent = agent || opts.mod.globalAgent;
  log('client_start', {
    node: process.version, axios: require('axios/package.json').version,
    node_fetch: require('node-fetch/package.json').version,
    follow_redirects: require('follow-redirects/package.json').version,
    base, sessions: opts.sessions, axios_timeout_ms: opts.axiosTimeout, agent: opts.agent,
    agent_keep_alive: Boolean(effectiveAgent.keepAlive), agent_timeout_ms: effectiveAgent.options.timeout || 0,
    extra: opts.extra, think_ms: opts.thinkMs, no_axios: opts.noAxios,
    axios_max_redirects: opts.axiosMaxRedirects, tls: opts.https, servername: opts.servername,
  });

  const extra = opts.extra ? extraTraffic(base, opts.mod) : Promise.resolve([]);
  for (let n = 1; n <= opts.sessions; n++) {
    await session(n, base, opts, agent);
    if (n < opts.sessions) await sleep(opts.sessionGapMs);
  }
  const extraAgents = await extra;
  if (opts.lingerMs) await sleep(opts.lingerMs);
  // Close whatever is still pooled so the capture ends with explicit client FINs
  // instead of whatever the process exit happens to do.
  log('client_shutdown', { note: 'destroying pooled sockets' });
  for (const a of [effectiveAgent, ...extraAgents]) a.destroy();
  await sleep(200);
  log('client_exit', {});
}

main().catch((err) => { log('fatal', { error: err.stack || String(err) }); process.exit(1); });
