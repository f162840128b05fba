/**
 * `unload demo`: an embedded SRV DNS server, three demo backends and the balancer
 * in one process, so discovery and weighting can be seen with no setup.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { Balancer } from "../balancer.ts";
import { parseConfig } from "../config.ts";
import { waitForSignal } from "../cli.ts";
import { startDemoBackend } from "./backends.ts";
import { startDnsServer } from "./dns_server.ts";

/** The seed table: name, SRV priority, SRV weight. */
export const DEMO_TABLE = [["b1", 0, 30], ["b2", 0, 20], ["b3", 10, 40]] as const;

/**
 * Runs the demo until SIGINT/SIGTERM.
 *
 * @returns the exit code.
 */
export async function runDemo(options: { listen: string }): Promise<number> {
  const ac = new AbortController();
  const backends = await Promise.all(DEMO_TABLE.map(([name]) => startDemoBackend(name)));
  const dns = await startDnsServer({
    records: {
      srv: DEMO_TABLE.map(([name, priority, weight], i) => ({
        name: "_http._tcp.app.test",
        target: `${name}.test`,
        port: backends[i]!.port,
        priority,
        weight,
      })),
      a: DEMO_TABLE.map(([name]) => ({ name: `${name}.test`, address: "127.0.0.1" })),
    },
    signal: ac.signal,
  });
  const yaml = `# the demo's embedded config
listen: { http: ${options.listen} }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 2s }
scheduler: srv
routes:
  - name: app
    srv: _http._tcp.app.test
`;
  let lb: Balancer | undefined;
  try {
    lb = await Balancer.start(parseConfig(yaml, "<demo>"));
  } catch (e) {
    console.error(`unload demo: cannot start: ${(e as Error).message}`);
  }
  if (lb) {
    const url = `http://${lb.addrs.http!.hostname}:${lb.addrs.http!.port}/`;
    console.log(`unload demo
  DNS (SRV)  127.0.0.1:${dns.port} answers _http._tcp.app.test:
${
      DEMO_TABLE.map(([n, p, w], i) =>
        `               ${n}.test:${backends[i]!.port}  priority ${p}  weight ${w}`
      ).join("\n")
    }
  balancer   ${url}

Try:
  for i in $(seq 9); do curl -s ${url}; done     # b1 b2 b1 b2 b1 b3 b3 b3 b3
  deno run main.ts simulate --srv "b1:0:30,b2:0:20,b3:10:40" -n 9
Ctrl-C stops.`);
    await waitForSignal(["SIGINT", "SIGTERM"]);
    await lb.close();
  }
  ac.abort();
  await dns.closed;
  await Promise.all(backends.map((b) => b.close()));
  return lb ? 0 : 1;
}
