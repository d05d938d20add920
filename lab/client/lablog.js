'use strict';
// The lab's log line, shared by the Node clients (lab/client/client.js, lab/paths/nodeclient.js):
//   <ISO-8601 UTC with microseconds> client <event> key=value ...
// the same format as lab/server/lablog.py, so make_truth.py reads every log alike.
const { performance } = require('perf_hooks');

// Date has millisecond resolution only; timeOrigin + now() gives sub-millisecond wall time.
function isoNow() {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const micro = Math.min(999, Math.floor((ms - whole) * 1000));
  return new Date(whole).toISOString().replace('Z', String(micro).padStart(3, '0') + 'Z');
}

function fmt(v) {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return JSON.stringify(v.join(','));
  const s = String(v);
  return s === '' || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

function log(event, fields = {}) {
  const parts = [isoNow(), 'client', event];
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}=${fmt(v)}`);
  process.stdout.write(parts.join(' ') + '\n');
}

module.exports = { isoNow, fmt, log };
