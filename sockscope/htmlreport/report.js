// sockscope incident report: the verdict, a canvas timeline of every connection, details on click.
// Data is the JSON block #data (see sockscope/htmlreport/__init__.py: times are integer
// microseconds after the capture's first packet, -1 where missing). Everything a capture
// supplies (URIs, user agents, log lines) reaches the page through textContent only.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  // Lanes arrive compact (times after the lane's start, five small fields in one integer);
  // unpack them once into typed arrays of absolute times (µs after the capture's start).
  const N = D.lanes.id.length;
  const L = { id: D.lanes.id, group: Int32Array.from(D.lanes.group), start: Float64Array.from(D.lanes.start) };
  for (const k of ["end", "close", "silence", "late"]) {
    const a = new Float64Array(N), src = D.lanes[k];
    for (let i = 0; i < N; i++) a[i] = src[i] < 0 ? -1 : L.start[i] + src[i];
    L[k] = a;
  }
  L.closer = new Uint8Array(N); L.ckind = new Uint8Array(N); L.waiting = new Uint8Array(N);
  L.sev = new Uint8Array(N); L.detail = new Uint8Array(N);
  for (let i = 0; i < N; i++) {
    const f = D.lanes.flags[i];
    L.closer[i] = f & 3; L.ckind[i] = (f >> 2) & 3; L.waiting[i] = (f >> 4) & 1; L.sev[i] = (f >> 5) & 3; L.detail[i] = (f >> 7) & 1;
  }
  const SEV = ["none", "info", "warning", "error"];
  const COLOR = { client: "#6a3d9a", server: "#1b7837", ok: "#4477aa", fail: "#cc3311", wait: "#fdb863",
                  idle: "#d9d9d9", late: "#ee7733", life: "#9e9e9e", err: "#c62828", warn: "#b35806",
                  info: "#1565c0", grid: "#eeeeee", text: "#222222", muted: "#777777", sel: "#fff3c4",
                  group: "#f3f5f8", log: "#2166ac" };
  const SEV_COLOR = [COLOR.muted, COLOR.info, COLOR.warn, COLOR.err];

  // ---- small helpers --------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function sevBadge(s) { return el("span", { class: "sev " + (s || "none"), text: s || "none" }); }
  function dur(us) {              // the one duration style of every sockscope face
    const s = Math.abs(us) / 1e6;
    if (s >= 1) return (us / 1e6).toFixed(3) + " s";
    if (s >= 1e-3) return (us / 1e3).toFixed(1) + " ms";
    return Math.round(us) + " µs";
  }
  const pad = (v, n) => String(v).padStart(n, "0");
  function clock(us, digits) {    // time of day (UTC) of a relative time, from integer µs
    const abs = D.t0_us + us;
    const day = 86400e6;
    const t = ((abs % day) + day) % day;
    const h = Math.floor(t / 3600e6), m = Math.floor(t / 60e6) % 60, s = Math.floor(t / 1e6) % 60;
    const frac = pad(Math.floor(t % 1e6), 6).slice(0, digits === undefined ? 3 : digits);
    return pad(h, 2) + ":" + pad(m, 2) + ":" + pad(s, 2) + (frac ? "." + frac : "");
  }
  function copyText(text, button) {
    const done = () => { const old = button.textContent; button.textContent = "copied"; setTimeout(() => { button.textContent = old; }, 1200); };
    const fallback = () => {
      const ta = el("textarea"); ta.value = text; document.body.append(ta); ta.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* nothing more to try */ }
      ta.remove();
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }
  function filterLine(text) {
    const b = el("button", { class: "copy", type: "button", title: "Copy the Wireshark display filter", text: "copy" });
    b.addEventListener("click", () => copyText(text, b));
    return el("div", { class: "filter" }, el("code", { text: text }), b);
  }

  // ---- header, verdict, facts -----------------------------------------------------------
  const F = D.facts, V = D.verdict;
  document.getElementById("subtitle").textContent =
    `${F.packets.toLocaleString()} packets · ${F.connections.toLocaleString()} connections · ` +
    `${F.requests.toLocaleString()} requests · ${F.first_ts ? F.first_ts.replace("T", " ").slice(0, 23) + " UTC" : ""}` +
    ` · span ${dur(D.span_us)} · sockscope ${F.version}`;

  (function verdict() {
    const s = document.getElementById("verdict");
    s.append(el("h2", { text: "Verdict" }));
    if (!V.findings) {
      s.append(el("p", { id: "verdict-line", text: "No findings: no connection was closed with a request outstanding, no late answers, no stale reuse." }));
    } else {
      s.append(el("p", { id: "verdict-line" }, el("b", { text: `${V.findings.toLocaleString()} finding(s)` }),
        ` on ${V.on_connections.toLocaleString()} of ${F.connections.toLocaleString()} connection(s)`));
      const t = el("table", { id: "kinds" });
      t.append(el("tr", {}, el("th", { text: "severity" }), el("th", { text: "kind" }), el("th", { text: "connections" }), el("th", { text: "" })));
      for (const k of V.kinds) {
        t.append(el("tr", {}, el("td", {}, sevBadge(k.severity)), el("td", {}, el("code", { text: k.kind })),
          el("td", { class: "num", text: k.connections ? k.connections.toLocaleString() : `${k.findings} finding(s)` }),
          el("td", { text: k.title })));
      }
      s.append(t);
    }
    if (V.timers.length || V.other_clusters) {
      s.append(el("h3", { text: "Timers inferred from idle closes" }));
      const ul = el("ul", { id: "timers" });
      for (const h of V.timers) ul.append(el("li", { text: h }));
      if (!V.timers.length) ul.append(el("li", { text: "none" }));
      if (V.other_clusters) ul.append(el("li", { class: "muted", text: `${V.other_clusters} other group(s) of idle closes: smaller, single or too spread out for one timer` }));
      s.append(ul);
    }
    for (const k of V.kinds) {
      const b = el("div", { class: "kind-block " + k.severity });
      b.append(el("h3", {}, sevBadge(k.severity), " ", k.title, " ", el("span", { class: "muted", text: `(${k.kind})` })));
      b.append(el("p", { text: k.verdict }));
      if (k.advice) b.append(el("p", {}, el("b", { text: "What to do: " }), k.advice));
      if (k.patterns.length > 1) b.append(el("p", { class: "muted", text: "Patterns: " + k.patterns.map(([p, n]) => `${p} ×${n}`).join("; ") }));
      for (const sm of k.summaries) b.append(el("p", { class: "muted", text: sm }));
      if (k.examples.length) {
        const p = el("p", {}, "Examples: ");
        k.examples.forEach((cid, i) => {
          const a = el("a", { href: "#", text: `connection ${cid}` });
          a.addEventListener("click", (e) => { e.preventDefault(); reveal(cid); });
          if (i) p.append(", ");
          p.append(a);
        });
        b.append(p);
      }
      s.append(b);
    }
  })();

  (function facts() {
    const s = document.getElementById("facts");
    s.append(el("h2", { text: "The capture" }));
    const t = el("table");
    const row = (k, v) => t.append(el("tr", {}, el("td", { text: k }), el("td", { text: v })));
    row("file(s)", F.source);
    row("format", `${F.format || "-"} · link types ${Object.entries(F.linktypes || {}).map(([k, v]) => `${k}×${v}`).join(", ") || "-"}`);
    row("packets", `${F.packets.toLocaleString()} (${F.tcp_packets.toLocaleString()} TCP)`);
    const tun = Object.entries(F.tunnels || {});
    if (tun.length) row("in tunnels", tun.map(([k, v]) => `${v.toLocaleString()} packets ${k}`).join(", ") + " (the inner connections are the lanes)");
    const sk = Object.entries(F.skipped || {});
    if (sk.length) row("not analysed", sk.map(([k, v]) => `${v.toLocaleString()} ${k.replace(/_/g, " ")}`).join(", "));
    row("span", `${F.first_ts || "-"} → ${F.last_ts || "-"} (${dur(D.span_us)})`);
    row("connections · requests", `${F.connections.toLocaleString()} · ${F.requests.toLocaleString()}`);
    row("engine · version", `${F.engine} · sockscope ${F.version}`);
    for (const [src, o] of Object.entries(D.log_offsets || {})) row("log " + src, Object.entries(o).map(([k, v]) => `${k} ${v}`).join(", "));
    s.append(t);
    for (const w of F.warnings || []) s.append(el("p", { class: "warn-line", text: "warning: " + w }));
  })();

  // ---- timeline model -------------------------------------------------------------------
  const G = D.groups;
  const gFirst = new Int32Array(G.length).fill(-1), gLast = new Int32Array(G.length).fill(-1);
  for (let i = 0; i < N; i++) { const g = L.group[i]; if (gFirst[g] < 0) gFirst[g] = i; gLast[g] = i; }
  const laneOf = new Map();
  for (let i = 0; i < N; i++) laneOf.set(L.id[i], i);
  // groups with findings of severity warning/error start open (bounded: a huge one stays a row)
  const open = G.map((g) => (g.severity === "error" || g.severity === "warning"));
  const logsByConn = new Map();
  for (const m of D.logs || []) { if (!logsByConn.has(m[0])) logsByConn.set(m[0], []); logsByConn.get(m[0]).push(m); }
  let rows = [];            // >= 0: a lane index; < 0: -(group + 1), a group's header row
  function buildRows() {
    rows = [];
    if (logsByConn.has(-1)) rows.push(-(G.length + 1));     // the unplaced log lines' own row
    for (let g = 0; g < G.length; g++) {
      rows.push(-(g + 1));
      if (open[g] && gFirst[g] >= 0) for (let i = gFirst[g]; i <= gLast[g]; i++) rows.push(i);
    }
  }
  buildRows();

  const scroller = document.getElementById("scroller");
  const canvas = document.getElementById("tl");
  const spacer = document.getElementById("spacer");
  const tip = document.getElementById("tip");
  const ctx = canvas.getContext("2d");
  const ROW = 18, AXIS = 30, LABEL = 320;
  let W = 800, H = 400, dpr = 1;
  const spanUs = Math.max(D.span_us, 1);
  let v0 = -spanUs * 0.01, v1 = spanUs * 1.01;     // the visible time range, µs
  let selected = -1;

  function layout() {
    dpr = window.devicePixelRatio || 1;
    // as tall as the lanes need, up to most of the window
    scroller.style.height = Math.round(Math.max(140, Math.min(window.innerHeight * 0.62, AXIS + rows.length * ROW + 12))) + "px";
    W = Math.max(300, scroller.clientWidth);
    H = Math.max(200, scroller.clientHeight);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    canvas.style.width = W + "px"; canvas.style.height = H + "px";
    spacer.style.height = Math.max(0, AXIS + rows.length * ROW + 8 - H) + "px";
    draw();
  }
  const xOf = (us) => LABEL + (us - v0) / (v1 - v0) * (W - LABEL - 8);
  const usOf = (x) => v0 + (x - LABEL) / (W - LABEL - 8) * (v1 - v0);

  function niceStep(rangeUs, px) {
    const target = rangeUs / Math.max(2, px / 110);
    const p = Math.pow(10, Math.floor(Math.log10(target)));
    for (const m of [1, 2, 5, 10]) if (p * m >= target) return p * m;
    return p * 10;
  }

  let pending = false;
  function draw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; paint(); });
  }

  function paint() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW));
    const last = Math.min(rows.length, Math.ceil((top + H - AXIS) / ROW) + 1);
    // vertical grid
    const step = niceStep(v1 - v0, W - LABEL);
    ctx.strokeStyle = COLOR.grid; ctx.lineWidth = 1;
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS); ctx.lineTo(x, H); ctx.stroke();
    }
    for (let r = first; r < last; r++) {
      const y = AXIS + r * ROW - top;
      const code = rows[r];
      if (code < 0) paintGroup(-code - 1, y); else paintLane(code, y);
    }
    // the axis over everything
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, AXIS);
    ctx.strokeStyle = "#bbb"; ctx.beginPath(); ctx.moveTo(0, AXIS - 0.5); ctx.lineTo(W, AXIS - 0.5); ctx.stroke();
    ctx.fillStyle = COLOR.text; ctx.textAlign = "left";
    ctx.fillText(`${clock(v0, 3)} UTC`, 6, 9);
    ctx.fillStyle = COLOR.muted;
    ctx.fillText(`shown: ${dur(v1 - v0)}`, 6, 22);
    ctx.textAlign = "center";
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = xOf(t);
      if (x < LABEL + 20 || x > W - 20) continue;
      ctx.fillStyle = COLOR.text;
      ctx.fillText("+" + (step >= 1e6 ? (t / 1e6).toFixed(step >= 1e6 ? 0 : 3) + " s" : dur(t)), x, 9);
      ctx.fillStyle = COLOR.muted;
      ctx.fillText(clock(t, step >= 1e6 ? 0 : step >= 1e3 ? 3 : 6), x, 22);
    }
    ctx.textAlign = "left";
    // the label column's edge
    ctx.strokeStyle = "#ccc"; ctx.beginPath(); ctx.moveTo(LABEL - 4.5, AXIS); ctx.lineTo(LABEL - 4.5, H); ctx.stroke();
  }

  function clipText(text, maxW) {
    if (ctx.measureText(text).width <= maxW) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid; else hi = mid - 1; }
    return text.slice(0, lo) + "…";
  }

  function paintGroup(g, y) {
    ctx.fillStyle = COLOR.group; ctx.fillRect(0, y, W, ROW - 1);
    if (g === G.length) {                      // log lines that name no connection
      ctx.fillStyle = COLOR.text; ctx.fillText("log lines on no connection", 8, y + ROW / 2);
      paintLogs(-1, y);
      return;
    }
    const gr = G[g];
    const sevIdx = SEV.indexOf(gr.severity || "none");
    ctx.fillStyle = SEV_COLOR[Math.max(0, sevIdx)];
    ctx.fillRect(0, y, 4, ROW - 1);
    ctx.fillStyle = COLOR.text;
    ctx.fillText(clipText(`${open[g] ? "▾" : "▸"} ${gr.count.toLocaleString()} × ${gr.title}`, LABEL - 14), 8, y + ROW / 2);
    // density of the group's connections over the visible time: how many are open per bin
    const x0 = LABEL, x1 = W - 8, bins = Math.max(1, Math.floor((x1 - x0) / 2));
    const cnt = new Float32Array(bins);
    const a = gFirst[g], b = gLast[g];
    const scale = bins / (v1 - v0);
    let peak = 0;
    for (let i = a; i <= b; i++) {
      const s = L.start[i], e = L.end[i] < 0 ? s : L.end[i];
      if (e < v0 || s > v1) continue;
      const lo = Math.max(0, Math.floor((s - v0) * scale)), hi = Math.min(bins - 1, Math.floor((e - v0) * scale));
      for (let k = lo; k <= hi; k++) { cnt[k] += 1; if (cnt[k] > peak) peak = cnt[k]; }
    }
    if (peak > 0) {
      ctx.fillStyle = gr.severity === "error" ? "rgba(198,40,40,.55)" : gr.severity === "warning" ? "rgba(179,88,6,.55)" : "rgba(68,119,170,.45)";
      const hmax = ROW - 4;
      for (let k = 0; k < bins; k++) if (cnt[k]) {
        const h = Math.max(1, Math.round(hmax * Math.sqrt(cnt[k] / peak)));
        ctx.fillRect(x0 + k * 2, y + ROW - 2 - h, 2, h);
      }
    }
    if (gr.kind) { ctx.fillStyle = SEV_COLOR[Math.max(0, sevIdx)]; ctx.textAlign = "right"; ctx.fillText(gr.kind, x1, y + ROW / 2); ctx.textAlign = "left"; }
  }

  function marker(x, y, kind, color) {      // FIN: a triangle; RST: a cross; forged RST: a cross in a ring
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2;
    if (kind === 1) {
      ctx.beginPath(); ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y - 5); ctx.lineTo(x, y + 4); ctx.closePath(); ctx.fill();
    } else {
      ctx.beginPath(); ctx.moveTo(x - 4, y - 4); ctx.lineTo(x + 4, y + 4); ctx.moveTo(x + 4, y - 4); ctx.lineTo(x - 4, y + 4); ctx.stroke();
      if (kind === 3) { ctx.lineWidth = 1.5; ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke(); }
    }
    ctx.lineWidth = 1;
  }

  function paintLogs(cid, y) {
    const marks = logsByConn.get(cid);
    if (!marks) return;
    ctx.fillStyle = COLOR.log;
    for (const m of marks) {
      const x = xOf(m[1]);
      if (x < LABEL || x > W) continue;
      ctx.fillRect(Math.round(x) - 1, y + ROW - 6, 2, 5);
    }
  }

  function paintLane(i, y) {
    const mid = y + ROW / 2;
    if (i === selected) { ctx.fillStyle = COLOR.sel; ctx.fillRect(0, y, W, ROW - 1); }
    const cid = L.id[i];
    ctx.fillStyle = SEV_COLOR[L.sev[i]];
    if (L.sev[i] >= 2) ctx.fillRect(0, y + 2, 4, ROW - 5);
    const det = D.details[String(cid)];
    ctx.fillStyle = L.sev[i] >= 2 ? SEV_COLOR[L.sev[i]] : COLOR.text;
    ctx.fillText(clipText(`conn ${cid}` + (det ? `  ${det.client} → ${det.server}` : ""), LABEL - 16), 10, mid);
    const s = L.start[i], e = L.end[i] < 0 ? s : L.end[i];
    if (e < v0 || s > v1) return;
    const xs = Math.max(LABEL, xOf(s)), xe = Math.min(W - 8, xOf(e));
    ctx.save();
    ctx.beginPath(); ctx.rect(LABEL, y, W - LABEL - 8, ROW); ctx.clip();
    if (xe - xs < 1.5) {                     // too short to show more than where it is
      ctx.fillStyle = L.sev[i] >= 2 ? SEV_COLOR[L.sev[i]] : COLOR.life;
      ctx.fillRect(Math.round(xs), y + 3, 1.5, ROW - 7);
      ctx.restore();
      return;
    }
    ctx.strokeStyle = COLOR.life; ctx.beginPath(); ctx.moveTo(xs, mid + 0.5); ctx.lineTo(xe, mid + 0.5); ctx.stroke();
    // the silence before the close: orange while a request waited, grey when idle
    const sil = L.silence[i], cl = L.close[i];
    if (sil >= 0 && cl >= 0 && cl > sil) {
      ctx.fillStyle = L.waiting[i] ? COLOR.wait : COLOR.idle;
      ctx.fillRect(xOf(sil), y + 4, Math.max(1, xOf(cl) - xOf(sil)), ROW - 9);
    }
    if (det && xe - xs > 3) {
      for (const r of det.requests) {           // [index, method, uri, status, outcome, start, resp start, resp end]
        if (r[5] < 0) continue;
        const done = r[7] >= 0 && r[4] === "complete";
        const endUs = r[7] >= 0 ? r[7] : (cl >= 0 ? cl : e);
        ctx.fillStyle = done ? COLOR.ok : COLOR.fail;
        const a = xOf(r[5]), b = Math.max(a + 1.5, xOf(endUs));
        ctx.fillRect(a, mid - 3, b - a, 6);
        if (r[6] >= 0) { ctx.fillStyle = "#fff"; ctx.fillRect(xOf(r[6]), mid - 3, 1, 6); }
      }
    }
    if (L.late[i] >= 0) { ctx.fillStyle = COLOR.late; ctx.beginPath(); ctx.arc(xOf(L.late[i]), mid, 3.5, 0, 2 * Math.PI); ctx.fill(); }
    if (cl >= 0 && L.ckind[i]) {
      const color = L.ckind[i] === 3 ? COLOR.err : (L.closer[i] === 1 ? COLOR.client : COLOR.server);
      marker(xOf(cl), mid, L.ckind[i], color);
    }
    paintLogs(cid, y);
    ctx.restore();
  }

  // ---- interaction --------------------------------------------------------------------
  function rowAt(clientY) {
    const rect = canvas.getBoundingClientRect();
    const y = clientY - rect.top;
    if (y < AXIS) return null;
    const r = Math.floor((y - AXIS + scroller.scrollTop) / ROW);
    return r >= 0 && r < rows.length ? rows[r] : null;
  }
  function zoom(factor, atX) {
    const c = atX === undefined ? (v0 + v1) / 2 : usOf(atX);
    let a = c - (c - v0) * factor, b = c + (v1 - c) * factor;
    if (b - a < 5) { const m = (a + b) / 2; a = m - 2.5; b = m + 2.5; }
    const maxSpan = spanUs * 1.2;
    if (b - a > maxSpan) { a = -spanUs * 0.1; b = spanUs * 1.1; }
    v0 = a; v1 = b; draw();
  }
  let drag = null;
  scroller.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, v0, v1, moved: false, top: scroller.scrollTop };
    scroller.classList.add("dragging");
  });
  window.addEventListener("mousemove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      const per = (drag.v1 - drag.v0) / (W - LABEL - 8);
      v0 = drag.v0 - dx * per; v1 = drag.v1 - dx * per;
      scroller.scrollTop = drag.top - dy;
      draw();
      return;
    }
    hover(e);
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    scroller.classList.remove("dragging");
    if (!moved && scroller.contains(e.target)) click(e);
  });
  scroller.addEventListener("wheel", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) {
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      zoom(e.deltaY > 0 ? 1.25 : 0.8, e.clientX - rect.left);
    } else if (e.shiftKey && e.deltaY) {
      e.preventDefault();
      const d = (v1 - v0) * 0.1 * Math.sign(e.deltaY);
      v0 += d; v1 += d; draw();
    }
  }, { passive: false });
  scroller.addEventListener("dblclick", (e) => { const rect = canvas.getBoundingClientRect(); zoom(0.5, e.clientX - rect.left); });
  scroller.addEventListener("scroll", draw);
  scroller.addEventListener("mouseleave", () => { tip.hidden = true; });
  scroller.addEventListener("keydown", (e) => {
    if (e.key === "+" || e.key === "=") zoom(0.8); else if (e.key === "-") zoom(1.25);
    else if (e.key === "0") resetView(); else return;
    e.preventDefault();
  });
  window.addEventListener("resize", layout);
  function resetView() { v0 = -spanUs * 0.01; v1 = spanUs * 1.01; draw(); }
  document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
  document.getElementById("zoom-reset").addEventListener("click", resetView);
  document.getElementById("expand-all").addEventListener("click", () => { open.fill(true); buildRows(); layout(); });
  document.getElementById("collapse-all").addEventListener("click", () => { open.fill(false); buildRows(); layout(); });
  document.getElementById("find").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const q = e.target.value.trim();
    let cid = /^\d+$/.test(q) ? Number(q) : null;
    if (cid === null) for (const [k, d] of Object.entries(D.details)) if (d.client === q || d.server === q) { cid = Number(k); break; }
    if (cid !== null && laneOf.has(cid)) reveal(cid); else e.target.setCustomValidity("no such connection"), e.target.reportValidity();
  });
  document.getElementById("find").addEventListener("input", (e) => e.target.setCustomValidity(""));

  function hover(e) {
    if (!scroller.contains(e.target)) { tip.hidden = true; return; }
    const code = rowAt(e.clientY);
    if (code === null) { tip.hidden = true; return; }
    let text;
    if (code < 0) {
      const g = -code - 1;
      text = g === G.length ? "log lines that name no connection" :
        `${G[g].count.toLocaleString()} connection(s): ${G[g].title}` + (G[g].kind ? `\n${G[g].kind} (${G[g].severity})` : "") + `\nclick to ${open[g] ? "close" : "open"}`;
    } else {
      const cid = L.id[code], d = D.details[String(cid)];
      text = `connection ${cid} (tcp.stream eq ${cid})` + (d ? `\n${d.client} → ${d.server}` : "") + `\n${G[L.group[code]].title}`;
      if (L.close[code] >= 0) text += `\nclosed ${clock(L.close[code], 6)}` + (L.silence[code] >= 0 ? ` after ${dur(L.close[code] - L.silence[code])} of silence` : "");
    }
    const rect = scroller.getBoundingClientRect();
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(e.clientX - rect.left + 14, rect.width - 300) + "px";
    const below = e.clientY - rect.top + 14;            // under the pointer, or above it near the bottom
    const y = below + tip.offsetHeight > rect.height ? Math.max(0, e.clientY - rect.top - tip.offsetHeight - 8) : below;
    tip.style.top = (y + scroller.scrollTop) + "px";
  }

  function click(e) {
    const code = rowAt(e.clientY);
    if (code === null) return;
    if (code < 0) {
      const g = -code - 1;
      if (g < G.length) { open[g] = !open[g]; buildRows(); layout(); }
      return;
    }
    select(code);
  }

  function reveal(cid) {
    const i = laneOf.get(cid);
    if (i === undefined) return;
    const g = L.group[i];
    if (!open[g]) { open[g] = true; buildRows(); layout(); }
    const r = rows.indexOf(i);
    scroller.scrollTop = Math.max(0, r * ROW - (H - AXIS) / 2);
    const s = L.start[i], e = Math.max(L.end[i], L.close[i], s + 1);
    const margin = (e - s) * 0.08 + 1;
    v0 = s - margin; v1 = e + margin;
    select(i);
    scroller.scrollIntoView({ block: "nearest" });
  }

  function select(i) {
    selected = i;
    draw();
    showDetails(i);
  }

  function showDetails(i) {
    const box = document.getElementById("details");
    box.replaceChildren();
    const cid = L.id[i], d = D.details[String(cid)];
    box.append(el("h3", { text: `connection ${cid}` }));
    box.append(filterLine(`tcp.stream eq ${cid}`));
    const g = G[L.group[i]];
    box.append(el("p", { class: "muted", text: `${g.count.toLocaleString()} connection(s) like it: ${g.title}` }));
    if (!d) {
      box.append(el("p", { text: `A connection without findings: its details are not embedded (the report keeps them for every connection with a finding and for the first ${D.detail_per_group} of each group).` }));
      box.append(el("p", {}, "Its whole story: ", el("code", { text: `sockscope diagnose CAPTURE --conn ${cid}` })));
      const t = el("table");
      t.append(el("tr", {}, el("td", { text: "start" }), el("td", { text: clock(L.start[i], 6) })));
      if (L.close[i] >= 0) t.append(el("tr", {}, el("td", { text: "closed" }), el("td", { text: `${clock(L.close[i], 6)} by the ${["-", "client", "server"][L.closer[i]]} (${["", "FIN", "RST", "forged RST"][L.ckind[i]]})` })));
      box.append(t);
      return;
    }
    const t = el("table");
    const row = (k, v) => t.append(el("tr", {}, el("td", { class: "muted", text: k }), el("td", { text: v })));
    row("client → server", `${d.client} → ${d.server}`);
    row("state · history", `${d.state || "-"} · ${d.history || "-"}`);
    row("protocol", d.protocol || "-");
    row("closed", d.closed_by ? `by the ${d.closed_by} (${d.close_kind}, frame ${d.close_frame})` + (d.idle_s != null ? ` after ${dur(d.idle_s * 1e6)} of silence` : "") : "not closed in the capture");
    row("frames", `${d.first_frame} – ${d.last_frame}`);
    box.append(t);
    if (d.findings.length) {
      box.append(el("h3", { text: "Findings" }));
      for (const f of d.findings) {
        const div = el("div", { class: "finding" });
        div.append(el("div", {}, sevBadge(f.severity), " ", el("code", { text: f.kind }), f.request_index != null ? ` (request ${f.request_index})` : ""));
        div.append(el("p", { text: f.summary }));
        div.append(filterLine(f.filter));
        if (f.frames.length) div.append(el("p", { class: "muted mono", text: "evidence: " + f.frames.map(([k, v]) => `${k} ${v}`).join(", ") }));
        box.append(div);
      }
    }
    box.append(el("h3", { text: "What happened" }));
    const ol = el("ol", { class: "story" });
    for (const [us, text] of d.events) ol.append(el("li", {}, el("span", { class: "t mono", text: clock(us, 6) }), text));
    box.append(ol);
    if (d.requests.length) {
      box.append(el("h3", { text: `Requests (${d.requests_total})` }));
      const rt = el("table", { class: "requests" });
      rt.append(el("tr", {}, ...["#", "request", "answer", "sent", "ttfb"].map((h) => el("th", { text: h }))));
      for (const r of d.requests) {
        const answer = r[4] === "complete" && r[3] != null ? String(r[3]) : String(r[4] || "-").replace(/_/g, " ");
        rt.append(el("tr", {}, el("td", { class: "num", text: r[0] }), el("td", { class: "mono", text: `${r[1] || "-"} ${r[2] || ""}` }),
          el("td", { text: answer }), el("td", { class: "mono", text: r[5] >= 0 ? clock(r[5], 6) : "-" }),
          el("td", { class: "num", text: r[5] >= 0 && r[6] >= 0 ? dur(r[6] - r[5]) : "-" })));
      }
      box.append(rt);
    }
    if (d.gaps.length) {
      box.append(el("h3", { text: "Silences" }));
      const ul = el("ul");
      for (const [a, b, waiting, by] of d.gaps) ul.append(el("li", { text: `${clock(a, 6)}: ${dur(b - a)}${waiting ? " while a request waited" : ""}, ended by ${by.replace(/_/g, " ")}` }));
      box.append(ul);
    }
  }

  // ---- legend ---------------------------------------------------------------------------
  (function legend() {
    const lg = document.getElementById("legend");
    const item = (color, text) => { const i = el("i"); i.style.background = color; lg.append(i, text); };
    item(COLOR.ok, "exchange"); item(COLOR.fail, "no (full) answer"); item(COLOR.wait, "silence, request waiting");
    item(COLOR.idle, "idle"); item(COLOR.client, "client FIN ▼ / RST ✕"); item(COLOR.server, "server FIN / RST");
    item(COLOR.err, "forged RST ⊗"); item(COLOR.late, "data after close");
    if ((D.logs || []).length) item(COLOR.log, "log line");
  })();

  layout();
  // a single small capture: its one connection with a finding is shown at once
  const firstBad = Array.prototype.findIndex.call(L.sev, (s) => s >= 2);
  if (firstBad >= 0 && N <= 50) select(firstBad);
  // For scripts and tests driving the page: where a lane is drawn (canvas pixels), and the
  // state behind what is on screen.
  function laneY(cid) {
    const r = rows.indexOf(laneOf.get(cid));
    return r < 0 ? null : AXIS + r * ROW - scroller.scrollTop + ROW / 2;
  }
  function groupY(g) {
    const r = rows.indexOf(-(g + 1));
    return r < 0 ? null : AXIS + r * ROW - scroller.scrollTop + ROW / 2;
  }
  window.sockscopeReport = { rows: () => rows.length, lanes: N, groups: G.length, laneY, groupY,
                             view: () => [v0, v1], selected: () => (selected < 0 ? null : L.id[selected]),
                             isOpen: (g) => open[g], reveal, zoom };
})();
