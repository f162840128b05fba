/**
 * `unload demo`: an embedded SRV DNS server, three demo backends, the balancer and its
 * admin listener (dashboard) in one process, so discovery and weighting can be seen
 * with no setup. `--traffic` adds a small built-in load so the dashboard moves. Active
 * health checks are on, so a backend stopped through the demo's admin endpoint
 * (`POST /demo/backends/NAME/stop`) turns DOWN without traffic.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseHostPort } from "../../config/address.ts";
import { type AdminServer, startAdmin } from "../../admin/server.ts";
import { Balancer } from "../../server/balancer.ts";
import { parseConfig } from "../../config/config.ts";
import { waitForSignal } from "../../server/signals.ts";
import { startDemoBackend } from "./backends.ts";
import { demoControl, type DemoSlot } from "./control.ts";
import { startDnsServer } from "./dns_server.ts";
import { startTraffic, type Traffic } from "./traffic.ts";

/** The seed table: name, SRV priority, SRV weight. */
export const DEMO_TABLE = [["b1", 0, 30], ["b2", 0, 20], ["b3", 10, 40]] as const;

/** Options for {@linkcode runDemo}. */
export interface DemoOptions {
  /** The balancer's address, e.g. `127.0.0.1:8080`. */
  listen: string;
  /** The admin (dashboard) address. @default {"127.0.0.1:9090"} */
  admin?: string | undefined;
  /** Send built-in traffic to the balancer. @default {false} */
  traffic?: boolean | undefined;
}

/**
 * Runs the demo until SIGINT/SIGTERM.
 *
 * @returns the exit code.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  let adminAddr;
  try {
    adminAddr = parseHostPort(options.admin ?? "127.0.0.1:9090");
  } catch (e) {
    console.error(`unload demo: --admin: ${(e as Error).message}`);
    return 2;
  }
  const ac = new AbortController();
  const slots: DemoSlot[] = await Promise.all(DEMO_TABLE.map(async ([name]) => {
    const backend = await startDemoBackend(name);
    return { name, port: backend.port, backend };
  }));
  const dns = await startDnsServer({
    records: {
      srv: DEMO_TABLE.map(([name, priority, weight], i) => ({
        name: "_http._tcp.app.test",
        target: `${name}.test`,
        port: slots[i]!.port,
        priority,
        weight,
      })),
      a: DEMO_TABLE.map(([name]) => ({ name: `${name}.test`, address: "127.0.0.1" })),
    },
    signal: ac.signal,
  });
  const yaml = `# the demo's embedded config
listen: { http: ${options.listen}, h2c: true }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 2s }
scheduler: srv
# active checks: a stopped backend shows DOWN within ~2 s, with or without traffic
health: { path: /healthz, interval: 1s, timeout: 500ms, failures: 2, rise: 2 }
routes:
  - name: app
    srv: _http._tcp.app.test
`;
  let lb: Balancer | undefined;
  let admin: AdminServer | undefined;
  try {
    const running = lb = await Balancer.start(parseConfig(yaml, "<demo>"));
    // no file to re-read: POST /reload applies the embedded config again
    const reload = () => running.reload(parseConfig(yaml, "<demo>"));
    admin = startAdmin(lb, adminAddr, { handle: demoControl(slots, { reload }) });
  } catch (e) {
    console.error(`unload demo: cannot start: ${(e as Error).message}`);
  }
  if (lb && admin) {
    const url = `http://${lb.addrs.http!.hostname}:${lb.addrs.http!.port}/`;
    const adminUrl = `http://${admin.addr.hostname}:${admin.addr.port}/`;
    const stopTraffic = new AbortController();
    let traffic: Traffic | undefined;
    if (options.traffic) traffic = startTraffic(url, { signal: stopTraffic.signal });
    console.log(`unload demo
  DNS (SRV)  127.0.0.1:${dns.port} answers _http._tcp.app.test:
${
      DEMO_TABLE.map(([n, p, w], i) =>
        `               ${n}.test:${slots[i]!.port}  priority ${p}  weight ${w}`
      ).join("\n")
    }
  balancer   ${url}
  dashboard  ${adminUrl}
  metrics    ${adminUrl}metrics   status ${adminUrl}status
  traffic    ${traffic ? "on: 3 requests every 25 ms" : "off (add --traffic)"}

Try:
  for i in $(seq 9); do curl -s ${url}; done     # b1 b2 b1 b2 b1 b3 b3 b3 b3
  curl --http2-prior-knowledge ${url}             # the same over HTTP/2 (h2c)
  curl -X POST ${adminUrl}demo/backends/b1/stop    # then .../start; watch the dashboard
  npx -y deno@2.9.6 run main.ts simulate --srv "b1:0:30,b2:0:20,b3:10:40" -n 9
Ctrl-C stops.`);
    await waitForSignal(["SIGINT", "SIGTERM"]);
    stopTraffic.abort();
    await traffic?.done;
    await admin.close();
    await lb.close();
  } else {
    await lb?.close();
  }
  ac.abort();
  await dns.closed;
  await Promise.all(slots.map((s) => s.backend?.close()));
  return lb && admin ? 0 : 1;
}
