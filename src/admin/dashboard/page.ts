/// <reference lib="dom" />
/**
 * The dashboard's browser script, type-checked against the DOM and the `status`
 * JSON it polls. It is not imported by the server: `deno task dashboard`
 * (`_tools/build_dashboard.ts`) bundles it into `_page_script.ts`, the string
 * the page inlines, and `deno task check` fails when that string is stale.
 *
 * It keeps a short history of counters and renders per-route and per-backend
 * rates, shares, health, pools and DNS freshness. Every row carries `data-*`
 * attributes for tests and scraping.
 *
 * @module
 */
"use strict";
import type { RouteStatus, Status } from "../status.ts";

/** One route's counters at one poll. */
interface RouteSample {
  requests: number;
  errors: number;
  counts: number[];
  /** Requests finished, by backend id. */
  backends: Record<string, number>;
}

/** The counters of one poll. */
interface Sample {
  now: number;
  routes: Record<string, RouteSample>;
  exhausted: number;
}

/** An alert line: its class (`bad` or `warn`) and text. */
type Alert = [string, string];

type Child = Node | string | number | null | undefined;

const WINDOW = 10; // seconds of history behind rates, shares and latency
const HISTORY = 61; // samples kept (sparklines)
let history: Sample[] = [];
let lastOk = 0;

function h(tag: string, attrs: Record<string, string> | null, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const k in attrs || {}) {
    const v = attrs![k]!;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}
function pct(x: number | null): string {
  return x == null || !isFinite(x) ? "–" : (x * 100).toFixed(1) + "%";
}
function num(x: number | null, d?: number): string {
  return x == null || !isFinite(x) ? "–" : x.toFixed(d == null ? 1 : d);
}
function dur(s: number | null): string {
  if (s == null || !isFinite(s)) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function ms(s: number | null): string {
  return s == null || !isFinite(s) ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
}

function sample(st: Status): Sample {
  const routes: Record<string, RouteSample> = {};
  for (const r of st.routes) {
    const backends: Record<string, number> = {};
    for (const b of r.backends) backends[b.id] = b.requests;
    routes[r.name] = {
      requests: r.requests,
      errors: r.status["5xx"] || 0,
      counts: r.latency.counts,
      backends,
    };
  }
  const exhausted = Object.values(st.exhausted).reduce((a, n) => a + n, 0);
  return { now: st.now, routes, exhausted };
}
function newest(): Sample {
  return history[history.length - 1]!;
}
// The oldest sample at most WINDOW seconds older than the newest.
function windowStart(): Sample {
  const last = newest();
  for (const s of history) if (last.now - s.now <= WINDOW * 1000 + 200) return s;
  return last;
}
function quantile(
  q: number,
  le: readonly number[],
  from: number[] | null,
  to: number[],
): number | null {
  const n = to.length;
  const total = to[n - 1]! - (from ? from[n - 1]! : 0);
  if (!(total > 0)) return null;
  const rank = q * total;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const c = to[i]! - (from ? from[i]! : 0);
    if (c >= rank) {
      if (i >= le.length) return le[le.length - 1]!;
      const lo = i === 0 ? 0 : le[i - 1]!;
      return lo + (le[i]! - lo) * ((rank - prev) / Math.max(1, c - prev));
    }
    prev = c;
  }
  return null;
}
function spark(route: string, id: string): SVGSVGElement {
  const pts: number[] = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1]!.routes[route], b = history[i]!.routes[route];
    const dt = (history[i]!.now - history[i - 1]!.now) / 1000;
    if (!a || !b || !(dt > 0) || b.backends[id] == null) continue;
    pts.push(Math.max(0, (b.backends[id]! - (a.backends[id] || 0)) / dt));
  }
  const max = Math.max(1, ...pts);
  const step = 90 / Math.max(1, HISTORY - 2);
  const off = 90 - step * (pts.length - 1);
  const coords = pts.map((v, i) =>
    (off + i * step).toFixed(1) + "," + (19 - v / max * 18).toFixed(1)
  );
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 90 20");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  return svg;
}
function kpi(k: string, v: Child): HTMLElement {
  return h("div", { class: "kpi" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k));
}

// What a step did so far: the answers it gave (`403 ×2`), a mirror's copies by result, auth
// decisions, and the responses compress encoded (with the size they came to).
function stepCounts(r: RouteStatus, name: string): string {
  const parts: string[] = [];
  for (const key in r.policyAnswers) {
    const [policy, code] = key.split(" ");
    if (policy === name) parts.push(code + " ×" + r.policyAnswers[key]);
  }
  if (name === "mirror") {
    for (const result in r.mirror) parts.push(result.replace("_", " ") + " " + r.mirror[result]);
  }
  if (name === "auth") {
    for (const key in r.auth) parts.push(key + " " + r.auth[key]);
  }
  if (name === "compress") {
    for (const coding in r.compressed) {
      const c = r.compressed[coding]!;
      const ratio = c.in > 0 ? " (" + Math.round(c.out / c.in * 100) + " %)" : "";
      parts.push(coding + " " + c.responses + ratio);
    }
  }
  return parts.join(" · ");
}

// The route's policy steps in the order they run (none: nothing is shown).
function renderPolicies(r: RouteStatus): HTMLElement | null {
  if (r.policySteps.length === 0) return null;
  const rows = r.policySteps.map((s, i) =>
    h(
      "tr",
      { "data-policy": s.name, "data-summary": s.summary, "data-counts": stepCounts(r, s.name) },
      h("td", null, i + 1),
      h("td", { class: "l" }, h("b", null, s.name)),
      h(
        "td",
        { class: "l" },
        s.summary,
        s.response != null && s.response !== s.summary
          ? h("div", { class: "dim" }, "on responses: " + s.response)
          : null,
      ),
      h("td", null, stepCounts(r, s.name) || "–"),
    )
  );
  const head = h(
    "tr",
    null,
    ...["#", "policy", "what it does", "so far"].map((t, i) =>
      h("th", i === 1 || i === 2 ? { class: "l" } : null, t)
    ),
  );
  return h(
    "table",
    { class: "policies" },
    h("thead", null, head),
    h("tbody", null, ...rows),
  );
}

function renderRoute(r: RouteStatus, st: Status, alerts: Alert[]): HTMLElement {
  const start = windowStart(), end = newest();
  const dt = (end.now - start.now) / 1000;
  const a = start.routes[r.name], z = end.routes[r.name]!;
  const delta = (id: string) =>
    z.backends[id]! - (a && a.backends[id] != null ? a.backends[id]! : 0);
  let sum = 0;
  for (const b of r.backends) sum += Math.max(0, delta(b.id));
  const reqs = a ? z.requests - a.requests : 0;
  const errs = a ? z.errors - a.errors : 0;
  const from = a && a !== z ? a.counts : null;
  const inflight = r.backends.reduce((n, b) => n + b.inflight, 0);
  const meta = h(
    "div",
    { class: "meta" },
    h("span", null, "host ", h("b", null, r.host || "*")),
    h("span", null, "path ", h("b", null, r.path || "/")),
    h("span", null, "scheduler ", h("b", null, r.scheduler)),
  );
  if (r.probe) {
    meta.append(h(
      "span",
      { "data-probe": r.probe.check, "data-protocol": r.probe.protocol },
      "check ",
      h("b", null, r.probe.check),
      " over " + r.probe.protocol + " every " + dur(r.probe.interval / 1000),
    ));
  }
  if (r.srv) {
    const age = r.srv.lastSuccess == null ? null : (st.now - r.srv.lastSuccess) / 1000;
    const badge = r.srv.stale
      ? h("span", { class: "badge warn" }, "STALE")
      : h("span", { class: "badge ok" }, "fresh");
    meta.append(h(
      "span",
      { "data-srv": r.srv.name, "data-stale": String(r.srv.stale) },
      "SRV ",
      h("b", null, r.srv.name),
      " ",
      badge,
      " last ok " + dur(age) + " ago · " + r.srv.failures + "/" + r.srv.lookups +
        " lookups failed",
    ));
    if (r.srv.stale) {
      alerts.push([
        "warn",
        "DNS: " + r.srv.name + " (route " + r.name +
        ") is stale, serving the last good set from " + dur(age) + " ago: " +
        (r.srv.lastError || "lookup failed"),
      ]);
    }
  }
  const rows = r.backends.map((b) => {
    const share = sum > 0 ? Math.max(0, delta(b.id)) / sum : null;
    const rate = dt > 0 ? Math.max(0, delta(b.id)) / dt : null;
    if (!b.healthy) {
      alerts.push([
        "bad",
        "Backend " + b.name + " (" + b.id + ") on route " + r.name + " is DOWN (ejected)" +
        (b.probe && !b.probe.ok ? ": " + b.probe.reason : ""),
      ]);
    }
    const fill = h("div", {
      class: "fill",
      style: "width:" + ((share || 0) * 100).toFixed(1) + "%",
    });
    const mark = h("div", {
      class: "marker",
      style: "left:calc(" + (b.share * 100).toFixed(1) + "% - 1px)",
    });
    return h(
      "tr",
      {
        class: b.healthy ? "" : "down",
        "data-backend": b.name,
        "data-id": b.id,
        "data-healthy": String(b.healthy),
        "data-probe": b.probe ? b.probe.reason : "",
        "data-share": share == null ? "" : share.toFixed(4),
        "data-expected": b.share.toFixed(4),
        "data-rate": rate == null ? "" : rate.toFixed(2),
      },
      h("td", null, h("b", null, b.name), h("div", { class: "dim" }, b.id)),
      h("td", null, b.priority),
      h("td", null, b.weight),
      h(
        "td",
        { class: "l", title: b.probe ? "last check: " + b.probe.reason : "" },
        b.healthy
          ? h("span", { class: "badge ok" }, "up")
          : h("span", { class: "badge bad" }, "DOWN"),
      ),
      h("td", null, num(rate)),
      h("td", null, spark(r.name, b.id)),
      h(
        "td",
        null,
        h(
          "div",
          { class: "share" },
          h("span", { class: "txt" }, pct(share) + " / " + pct(b.share)),
          h("div", { class: "track" }, fill, mark),
        ),
      ),
      h("td", null, b.inflight),
      h("td", null, b.pool.active + " / " + b.pool.idle),
      h("td", null, b.requests),
      h("td", null, b.status["5xx"] || 0),
    );
  });
  const head = h(
    "tr",
    null,
    ...[
      "backend",
      "prio",
      "weight",
      "health",
      "req/s",
      "last 60 s",
      "share (actual / configured)",
      "in-flight",
      "pool active / idle",
      "requests",
      "5xx",
    ].map((t, i) => h("th", i === 3 ? { class: "l" } : null, t)),
  );
  return h(
    "section",
    { class: "route", "data-route": r.name },
    h("h2", null, "route " + r.name),
    meta,
    renderPolicies(r),
    h(
      "div",
      { class: "kpis" },
      kpi("req/s", num(dt > 0 ? reqs / dt : null)),
      kpi("5xx", pct(reqs > 0 ? errs / reqs : null)),
      kpi("p50", ms(quantile(0.5, r.latency.le, from, z.counts))),
      kpi("p99", ms(quantile(0.99, r.latency.le, from, z.counts))),
      kpi("in-flight", inflight),
      kpi("backends up", r.backends.filter((b) => b.healthy).length + " / " + r.backends.length),
    ),
    h("table", null, h("thead", null, head), h("tbody", null, ...rows)),
  );
}

// The certificates listen.https serves: names, expiry, days left (alerts under 14 days).
function renderCertificates(st: Status, alerts: Alert[]): Node[] {
  if (st.certificates.length === 0) return [];
  const rows = st.certificates.map((c, i) => {
    const days = c.expiresIn / 86400;
    if (days < 0) {
      alerts.push(["bad", "TLS certificate " + c.file + " (" + c.subject + ") has expired"]);
    } else if (days < 14) {
      alerts.push([
        "warn",
        "TLS certificate " + c.file + " (" + c.subject + ") expires in " + dur(c.expiresIn),
      ]);
    }
    return h(
      "tr",
      { "data-cert": c.file, "data-names": c.names.join(" "), "data-expires": c.notAfter },
      h("td", { class: "l" }, h("b", null, c.names.join(", ") || c.subject)),
      h("td", { class: "l" }, c.file + (i === 0 ? " (default)" : "")),
      h("td", null, c.serial),
      h("td", null, c.notAfter.slice(0, 10)),
      h("td", null, num(days, 1)),
    );
  });
  const head = h(
    "tr",
    null,
    ...["names", "file", "serial", "expires", "days left"].map((t, i) =>
      h("th", i < 2 ? { class: "l" } : null, t)
    ),
  );
  return [
    h(
      "section",
      { class: "route", id: "certificates" },
      h("h2", null, "TLS certificates"),
      h("table", null, h("thead", null, head), h("tbody", null, ...rows)),
    ),
  ];
}

// Bytes in a short human unit (B, KiB, MiB, GiB).
function bytes(n: number): string {
  if (n < 1024) return n + " B";
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) v /= 1024, i++;
  return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
}

// The tcp: routes, one table: a row per backend of each route, with its health, the
// connections open to it and over time, and the bytes each way.
function renderTcp(st: Status, alerts: Alert[]): Node[] {
  if (!st.tcp || st.tcp.length === 0) return [];
  const rows: Node[] = [];
  for (const r of st.tcp) {
    if (r.backends.length > 0 && !r.backends.some((b) => b.healthy)) {
      alerts.push(["bad", "tcp route " + r.name + " (" + r.listen + ") has no healthy backend"]);
    }
    const ends = Object.entries(r.ends).map(([e, n]) => e + " " + n).join(" · ");
    rows.push(h(
      "tr",
      { "data-tcp-route": r.name },
      h("td", { class: "l" }, h("b", null, r.name)),
      h("td", { class: "l" }, r.listen + " · " + r.scheduler + (r.srv ? " · " + r.srv.name : "")),
      h("td", null, ""),
      h("td", null, r.connections.active),
      h("td", null, r.connections.total),
      h("td", null, bytes(r.bytes.in)),
      h("td", null, bytes(r.bytes.out)),
      h("td", { class: "l dim" }, ends),
    ));
    for (const b of r.backends) {
      rows.push(h(
        "tr",
        {
          "data-tcp-backend": b.id,
          "data-route": r.name,
          "data-healthy": String(b.healthy),
          "data-active": String(b.active),
        },
        h("td", null, ""),
        h("td", { class: "l" }, b.id + (b.name !== b.id ? " (" + b.name + ")" : "")),
        h(
          "td",
          null,
          h("span", { class: "badge " + (b.healthy ? "ok" : "bad") }, b.healthy ? "up" : "down"),
        ),
        h("td", null, b.active),
        h("td", null, b.connections),
        h("td", null, bytes(b.bytesIn)),
        h("td", null, bytes(b.bytesOut)),
        h("td", { class: "l dim" }, b.probe ? b.probe.reason : ""),
      ));
    }
  }
  const head = h(
    "tr",
    null,
    ...["tcp route", "listen / backend", "state", "open", "total", "in", "out", ""].map((t, i) =>
      h("th", i < 2 || i === 7 ? { class: "l" } : null, t)
    ),
  );
  return [
    h(
      "section",
      { class: "route", id: "tcp-routes" },
      h("h2", null, "TCP routes"),
      h("table", null, h("thead", null, head), h("tbody", null, ...rows)),
    ),
  ];
}

function byId(id: string): HTMLElement {
  return document.getElementById(id)!;
}

function render(st: Status): void {
  byId("version").textContent = st.version;
  byId("uptime").textContent = dur(st.uptime);
  byId("total").textContent = String(st.requests);
  byId("workers").textContent = String(st.workers);
  const protocols = Object.entries(st.protocols);
  const all = protocols.reduce((n, [, c]) => n + c, 0);
  byId("protocols").textContent = all === 0 ? "–" : protocols
    .sort(([a], [b]) => a < b ? -1 : 1)
    .map(([p, c]) => p + " " + Math.round(c / all * 100) + "%").join(", ");
  byId("h2").textContent = st.h2.connections + " connections, " + st.h2.streams + " streams";
  byId("reloads").textContent = st.reloads.ok + " ok / " + st.reloads.failed + " failed";
  const stalled = st.tls.stalled;
  const stalledEl = byId("tls-stalled");
  stalledEl.textContent = stalled.client + " client, " + stalled.backend + " backend";
  stalledEl.setAttribute("data-client", String(stalled.client));
  stalledEl.setAttribute("data-backend", String(stalled.backend));
  const alerts: Alert[] = [];
  if (stalled.client + stalled.backend > 0) {
    alerts.push([
      "warn",
      "Sockets stuck in a TLS handshake: " + stalled.client + " from clients (past " +
      "timeouts.head), " + stalled.backend + " to backends (past timeouts.connect). The " +
      "runtime cannot close them before their peer leaves; each holds a descriptor " +
      "(docs/tls.md)",
    ]);
  }
  const failed = newest().exhausted - windowStart().exhausted;
  if (failed > 0) {
    alerts.push([
      "bad",
      "Out of file descriptors or local ports: " + failed + " accepts or backend " +
      "connects failed in the last " + WINDOW + " s (" + Object.keys(st.exhausted).join(", ") +
      "); the log names the limit to raise",
    ]);
  }
  if (st.reloads.last && !st.reloads.last.ok) {
    alerts.push([
      "warn",
      "Last config reload (" + dur((st.now - st.reloads.last.time) / 1000) +
      " ago) was rejected; the previous config is serving: " + st.reloads.last.error,
    ]);
  }
  byId("certs").replaceChildren(...renderCertificates(st, alerts));
  const sections = st.routes.map((r) => renderRoute(r, st, alerts));
  byId("routes").replaceChildren(...sections);
  byId("tcp").replaceChildren(...renderTcp(st, alerts));
  byId("alerts").replaceChildren(
    ...alerts.map(([cls, text]) => h("div", { class: "alert " + cls }, text)),
  );
}

async function poll(): Promise<void> {
  try {
    const res = await fetch("status", { cache: "no-store", signal: AbortSignal.timeout(2500) });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const st: Status = await res.json();
    const last = history[history.length - 1];
    if (last && st.now < last.now) history = []; // the balancer restarted
    history.push(sample(st));
    if (history.length > HISTORY) history.shift();
    render(st);
    lastOk = Date.now();
    const conn = byId("conn");
    conn.className = "";
    conn.textContent = "● live";
  } catch (e) {
    const conn = byId("conn");
    conn.className = "bad";
    conn.textContent = "● no answer from the balancer" +
      (lastOk ? " for " + dur((Date.now() - lastOk) / 1000) : "") + ": " + (e as Error).message;
  }
  setTimeout(poll, 1000);
}
poll();
