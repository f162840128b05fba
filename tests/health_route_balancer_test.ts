/**
 * `routes[].health` with HTTP/1.1 backends (issue #19): per-route passive settings on
 * one address, and reloads that change one route's checks but not another's.
 */
import { assert, assertEquals } from "@std/assert";
import { parseConfig } from "../src/config/config.ts";
import { freePort, RawClient, startLoggedBalancer } from "./_http.ts";
import { healthBackend, until } from "./_health.ts";

Deno.test("routes[].health failures and backoff apply to that route's record of a shared address only", async () => {
  const dead = freePort(); // nothing listens: every connect is refused
  await using good = healthBackend("good");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
retry: { attempts: 0 }
scheduler: round_robin
health: { failures: 3, backoff: 1h }
routes:
  - name: quick
    path: /quick
    health: { failures: 1, backoff: 100ms }
    backends: [{ address: 127.0.0.1:${dead} }, { address: 127.0.0.1:${good.port} }]
  - name: patient
    path: /patient
    backends: [{ address: 127.0.0.1:${dead} }, { address: 127.0.0.1:${good.port} }]
`);
  const deadIn = (route: number) =>
    lb.routes[route]!.scheduler.backends.find((b) => b.port === dead)!;
  assert(deadIn(0) !== deadIn(1), "one record per route: their checks differ");
  const statuses = async (path: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      using c = await RawClient.connect(lb.port);
      out.push(
        (await c.request(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`)).status,
      );
    }
    return out;
  };
  await statuses("/quick", 2); // one of them to the dead address
  assert(!deadIn(0).healthy, "quick: out after one failure");
  assert(deadIn(1).healthy, "patient: its record is not touched");
  assertEquals((await statuses("/quick", 4)).every((s) => s === 200), true);
  await statuses("/patient", 4); // two failures: still in
  assert(deadIn(1).healthy, "patient: two failures are not three");
  await statuses("/patient", 2);
  assert(!deadIn(1).healthy, "patient: out after the third");
  await until(() => deadIn(0).healthy, 5_000, "quick: back after its 100ms back-off");
  assert(!deadIn(1).healthy, "patient: still out (1h back-off)");
});

Deno.test("a reload that changes one route's checks keeps the other route's records, state and checker", async () => {
  await using a = healthBackend("a", 503);
  await using b = healthBackend("b");
  const yaml = (bInterval: string) => `
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 10s, failures: 1 }
routes:
  - name: ra
    path: /a
    backends: [{ address: 127.0.0.1:${a.port} }]
  - name: rb
    path: /b
    health: { interval: ${bInterval} }
    backends: [{ address: 127.0.0.1:${b.port} }]
`;
  await using lb = await startLoggedBalancer(yaml("60ms"));
  const recA = () => lb.routes[0]!.scheduler.backends[0]!;
  const recB = () => lb.routes[1]!.scheduler.backends[0]!;
  await until(() => !recA().healthy && b.probes >= 2, 5_000, "a down, b probed");
  const [oldA, oldB] = [recA(), recB()];
  assert((await lb.reload(parseConfig(yaml("70ms"), "test.yaml"))).ok);
  assert(recA() === oldA && !recA().healthy, "ra: same record, still down");
  assert(recB() !== oldB, "rb: new settings, a new record");
  const probes = b.probes;
  await until(() => b.probes >= probes + 2, 5_000, "b probed by the new checker");
  assert(recB().healthy);
  a.status = 200;
  await until(() => recA().healthy, 5_000, "ra's checker kept running and brings a back");
});
