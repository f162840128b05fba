/**
 * The balancer with thousands of routes: each host reaches its own route's
 * backends, and reloading to and from 10,000 routes under traffic loses no request.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { parseConfig } from "../src/config/config.ts";
import { startOrigin } from "./_h1_origin.ts";
import { delay, RawClient, type RawResponse, startBalancer } from "./_http.ts";

/**
 * A config with `count` routes `r<i>` (host `h<i>.tenant.test`, path `/p<i>`) to
 * `port`, the last of them to `lastPort`, and an any-host route `fallback` to `port`.
 */
function manyRoutes(count: number, port: number, lastPort = port): string {
  const lines = ["listen: { http: 127.0.0.1:0 }", "routes:"];
  for (let i = 0; i < count; i++) {
    const to = i === count - 1 ? lastPort : port;
    lines.push(
      `  - { name: r${i}, host: h${i}.tenant.test, path: /p${i}, backends: [{ address: 127.0.0.1:${to} }] }`,
    );
  }
  lines.push(`  - { name: fallback, backends: [{ address: 127.0.0.1:${port} }] }`);
  return lines.join("\n") + "\n";
}

function get(c: RawClient, host: string, path: string): Promise<RawResponse> {
  return c.request(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
}

Deno.test("a balancer with 10,000 routes sends the last route's host to its backend and the rest to theirs", async () => {
  await using tenants = startOrigin("tenants");
  await using last = startOrigin("last");
  await using lb = await startBalancer(manyRoutes(10_000, tenants.port, last.port));
  using c = await RawClient.connect(lb.port);
  const seen = async (host: string, path: string) => {
    const r = await get(c, host, path);
    return `${r.status} ${r.body.trim()}`;
  };
  assertEquals(await seen("h9999.tenant.test", "/p9999/x"), "200 last /p9999/x");
  assertEquals(await seen("H9999.Tenant.Test:80", "/p9999"), "200 last /p9999");
  assertEquals(await seen("h2000.tenant.test", "/p2000"), "200 tenants /p2000");
  assertEquals(await seen("h9999.tenant.test", "/other"), "200 tenants /other"); // the any-host route
  assertEquals(lb.routes.length, 10_001);
});

Deno.test("reloads to and from 10,000 routes while requests are in flight lose none of them", async () => {
  await using origin = startOrigin("b1");
  const small = parseConfig(manyRoutes(1, origin.port), "small.yaml");
  const big = parseConfig(manyRoutes(10_000, origin.port), "big.yaml");
  await using lb = await startBalancer(manyRoutes(1, origin.port));

  // requests the backend holds until every reload is done: in flight through all of them
  const held: RawClient[] = [];
  const heldAnswers: Promise<RawResponse>[] = [];
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.connect(lb.port);
    held.push(c);
    heldAnswers.push(get(c, `h${i * 400}.tenant.test`, "/hold"));
  }
  const holding = () => origin.heads.filter((h) => h.includes("/hold ")).length;
  for (let i = 0; i < 1000 && holding() < 20; i++) await delay(10);
  assertEquals(holding(), 20);

  // and keep-alive clients asking all along
  let stop = false;
  const answered = Array.from({ length: 8 }, () => 0);
  const failures: string[] = [];
  const loops = Array.from({ length: 8 }, async (_, n) => {
    using c = await RawClient.connect(lb.port);
    for (let i = n; !stop; i += 8) {
      const path = `/p${(i * 37) % 10_000}/x`;
      try {
        const r = await get(c, `h${(i * 37) % 10_000}.tenant.test`, path);
        if (r.status !== 200 || r.body !== `b1 ${path}\n`) failures.push(`${r.status} ${r.body}`);
      } catch (e) {
        failures.push((e as Error).message);
        return;
      }
      answered[n]!++;
    }
  });
  const answeredBy = () => [...answered];
  for (const next of [big, small, big, small, big]) {
    const before = answeredBy();
    assertEquals(await lb.reload(next), { ok: true });
    // every client gets answers between reloads, so each reload meets requests on their way
    for (let i = 0; i < 3000 && answeredBy().some((a, n) => a < before[n]! + 3); i++) {
      await delay(10);
    }
  }
  assertEquals(lb.routes.length, 10_001);
  stop = true;
  await Promise.all(loops);
  origin.release();
  const heldStatuses = (await Promise.all(heldAnswers)).map((r) => `${r.status} ${r.body.trim()}`);
  for (const c of held) c.close();
  assertEquals(failures, []);
  assert(answered.every((a) => a >= 15), `answers per client: ${answered.join(" ")}`);
  assertEquals(
    heldStatuses,
    Array.from({ length: 20 }, () => "200 b1 /hold"),
  );
});
