/**
 * `GET /`: the live dashboard, one self-contained HTML page (inline CSS and script, no
 * external resources) compiled into the binary. It polls `status` every second; its
 * script is written in `dashboard/page.ts` and bundled by `deno task dashboard`.
 *
 * @module
 */
import { PAGE_SCRIPT } from "./dashboard/_page_script.ts";

const STYLE = `
:root {
  --bg: #0f1419; --panel: #171d24; --line: #263040; --text: #d8dee6; --dim: #8391a2;
  --ok: #3fb950; --warn: #d29922; --bad: #f85149; --bar: #4c8dff; --mark: #f0f6fc;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: baseline;
  padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--panel);
}
header h1 { font-size: 18px; margin: 0 8px 0 0; letter-spacing: .5px; }
header .kv b { font-variant-numeric: tabular-nums; }
.dim { color: var(--dim); }
main { padding: 14px 20px; display: grid; gap: 16px; }
#alerts:empty { display: none; }
#alerts { display: grid; gap: 6px; }
.alert { padding: 8px 12px; border-radius: 6px; border-left: 4px solid var(--bad);
  background: rgba(248, 81, 73, .12); }
.alert.warn { border-color: var(--warn); background: rgba(210, 153, 34, .12); }
section.route { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; }
section.route h2 { font-size: 16px; margin: 0 0 4px; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 18px; color: var(--dim); margin-bottom: 10px; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px 28px; margin: 6px 0 12px; }
.kpi { min-width: 90px; }
.kpi .v { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.kpi .k { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 6px 10px; border-top: 1px solid var(--line);
  white-space: nowrap; }
th { color: var(--dim); font-weight: 500; font-size: 12px; text-transform: uppercase; }
th:first-child, td:first-child, th.l, td.l { text-align: left; }
tr.down td { background: rgba(248, 81, 73, .08); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.badge.ok { background: rgba(63, 185, 80, .18); color: var(--ok); }
.badge.bad { background: rgba(248, 81, 73, .2); color: var(--bad); }
.badge.warn { background: rgba(210, 153, 34, .2); color: var(--warn); }
.share { display: flex; align-items: center; gap: 8px; justify-content: flex-end; }
.track { position: relative; width: 160px; height: 10px; background: var(--line);
  border-radius: 5px; overflow: visible; }
.fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--bar);
  border-radius: 5px; }
.marker { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--mark); }
.share .txt { min-width: 112px; }
table.policies { margin-bottom: 12px; table-layout: fixed; }
table.policies th:nth-child(1) { width: 44px; }
table.policies th:nth-child(2) { width: 130px; }
table.policies th:nth-child(4) { width: 260px; }
table.policies td { white-space: normal; overflow-wrap: anywhere; vertical-align: top; }
svg.spark { width: 90px; height: 20px; vertical-align: middle; }
svg.spark polyline { fill: none; stroke: var(--bar); stroke-width: 1.5; }
#conn.bad { color: var(--bad); font-weight: 600; }
footer { padding: 4px 20px 16px; color: var(--dim); font-size: 12px; }
`;

/** The dashboard page. */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>unload dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>unload</h1>
  <span class="kv dim">version <b id="version">–</b></span>
  <span class="kv dim">uptime <b id="uptime">–</b></span>
  <span class="kv dim">requests <b id="total">–</b></span>
  <span class="kv dim">workers <b id="workers">–</b></span>
  <span class="kv dim">protocols <b id="protocols">–</b></span>
  <span class="kv dim">h2 <b id="h2">–</b></span>
  <span class="kv dim">stuck TLS handshakes <b id="tls-stalled">–</b></span>
  <span class="kv dim">reloads <b id="reloads">–</b></span>
  <span class="kv" id="conn">connecting…</span>
</header>
<main>
  <div id="alerts"></div>
  <div id="certs"></div>
  <div id="routes"></div>
  <div id="tcp"></div>
</main>
<footer>
  Polls <a href="status" style="color:inherit">status</a> every second; rates and shares are
  over the last 10 s; the white mark on a share bar is the share its priority and weight call
  for. Prometheus metrics: <a href="metrics" style="color:inherit">metrics</a>.
</footer>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
