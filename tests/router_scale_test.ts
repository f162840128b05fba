/**
 * The router at scale: thousands of routes, and random route tables checked against
 * a linear reference matcher (tests/_linear_router.ts: the router as it was before
 * hash maps and prefix trees). The shared case table is tests/router_test.ts.
 *
 * @module
 */
import { assertEquals } from "@std/assert";
import { Router } from "../src/proxy/router.ts";
import { PrefixTree } from "../src/proxy/_prefix_tree.ts";
import { LinearRouter } from "./_linear_router.ts";
import { random } from "./_scheduler.ts";

const LABELS = ["a", "b", "ab", "x", "app", "test", "example"];
const SEGMENTS = ["/", "/a", "/ab", "/abc", "/api", "/api/", "/api/v1", "/b", "/x/y", "/ap", ""];

function pick<T>(rand: () => number, from: readonly T[]): T {
  return from[Math.floor(rand() * from.length)]!;
}

function randomHost(rand: () => number): string {
  const labels = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(rand, LABELS));
  return labels.join(".");
}

function randomPath(rand: () => number): string {
  let p = pick(rand, SEGMENTS);
  for (let n = Math.floor(rand() * 3); n > 0; n--) p += pick(rand, SEGMENTS);
  return p;
}

Deno.test("Router picks the same route as a linear reference matcher on random route tables and requests", () => {
  const rand = random(20);
  let matched = 0;
  let unmatched = 0;
  for (let table = 0; table < 300; table++) {
    const router = new Router<number>();
    const reference = new LinearRouter<number>();
    const routes = 1 + Math.floor(rand() * 40);
    for (let i = 0; i < routes; i++) {
      const kind = rand();
      const host = kind < 0.2
        ? undefined
        : kind < 0.5
        ? `*.${randomHost(rand)}`
        : rand() < 0.2
        ? randomHost(rand).toUpperCase()
        : randomHost(rand);
      const path = rand() < 0.15 ? undefined : randomPath(rand) || "/";
      router.add({ host, path }, i);
      reference.add({ host, path }, i);
    }
    for (let q = 0; q < 100; q++) {
      let host = randomHost(rand);
      if (rand() < 0.2) host = host.toUpperCase();
      if (rand() < 0.2) host += ".";
      if (rand() < 0.3) host += ":8080";
      if (rand() < 0.05) host = ""; // HTTP/1.0 without Host
      const path = randomPath(rand) || "/";
      const want = reference.match(host, path);
      assertEquals(router.match(host, path), want, `table ${table}, ${host} ${path}`);
      if (want === undefined) unmatched++;
      else matched++;
    }
  }
  // the tables exercise both outcomes, not only one
  assertEquals([matched > 5000, unmatched > 1000], [true, true]);
});

Deno.test("Router finds the route listed after 10,000 others, by exact host, wildcard and any host", () => {
  const r = new Router<string>();
  for (let i = 0; i < 10_000; i++) {
    r.add({ host: `h${i}.tenant.test`, path: `/p${i}` }, `exact${i}`);
  }
  for (let i = 0; i < 1_000; i++) r.add({ host: `*.w${i}.tenant.test`, path: "/" }, `wild${i}`);
  r.add({ host: "*.tenant.test", path: "/" }, "tenants");
  r.add({ path: "/" }, "any");
  assertEquals(r.match("h9999.tenant.test", "/p9999/index.html"), "exact9999");
  assertEquals(r.match("H2000.Tenant.Test:443", "/p2000"), "exact2000");
  assertEquals(r.match("h2000.tenant.test", "/p2001"), "tenants"); // that host's path does not match
  assertEquals(r.match("a.b.w999.tenant.test", "/x"), "wild999");
  assertEquals(r.match("w999.tenant.test", "/x"), "tenants");
  assertEquals(r.match("elsewhere.example", "/p1"), "any");
});

Deno.test("Router picks the longest of 10,000 path prefixes on one host, and the first of equal ones", () => {
  const r = new Router<string>();
  for (let i = 0; i < 10_000; i++) r.add({ host: "app.test", path: `/api/${i}` }, `r${i}`);
  r.add({ host: "app.test", path: "/api/1234" }, "duplicate");
  r.add({ host: "app.test", path: "/api/" }, "api");
  assertEquals(r.match("app.test", "/api/1234/x"), "r1234");
  assertEquals(r.match("app.test", "/api/12345"), "r1234"); // a plain string prefix; 12345 ≥ 10,000
  assertEquals(r.match("app.test", "/api/999"), "r999");
  assertEquals(r.match("app.test", "/api/x"), "api");
  assertEquals(r.match("app.test", "/apix"), undefined);
});

Deno.test("Router sees a route added after a match, for the host it matched last and for others", () => {
  const r = new Router<string>();
  r.add({ host: "a.app.test", path: "/" }, "exact");
  assertEquals(r.match("a.app.test", "/x"), "exact");
  assertEquals(r.match("b.app.test", "/x"), undefined);
  r.add({ host: "*.app.test", path: "/x" }, "wild");
  assertEquals(r.match("b.app.test", "/x"), "wild");
  assertEquals(r.match("a.app.test", "/x"), "exact");
  r.add({ host: "a.app.test", path: "/x" }, "exact-x");
  r.add({ path: "/" }, "any");
  assertEquals(r.match("a.app.test", "/x"), "exact-x");
  assertEquals(r.match("b.app.test", "/y"), "any");
});

Deno.test("Router matches an empty Host (HTTP/1.0 without one) on the very first request, before any other", () => {
  const r = new Router<string>();
  r.add({ path: "/" }, "any");
  assertEquals(r.match("", "/"), "any");
  const exact = new Router<string>();
  exact.add({ host: "app.test" }, "app");
  assertEquals(exact.match("", "/"), undefined);
  assertEquals(exact.match("app.test", "/"), "app");
});

Deno.test("PrefixTree splits edges in any insertion order and keeps the longest plain prefix", () => {
  const prefixes = ["/abc", "/abd", "/ab", "/a", "/", "/abcdef", "/b"];
  const paths = ["/", "/a", "/ab", "/abc", "/abcd", "/abcdefg", "/abd", "/abx", "/b/c", "x", ""];
  const rand = random(7);
  for (let round = 0; round < 50; round++) {
    const order = [...prefixes].sort(() => rand() - 0.5);
    const t = new PrefixTree<string>();
    for (const p of order) t.add(p, p);
    assertEquals(t.size, prefixes.length);
    for (const path of paths) {
      const want = prefixes.filter((p) =>
        path.startsWith(p)
      ).sort((a, b) => b.length - a.length)[0];
      assertEquals(t.longest(path), want, `order ${order.join(" ")}, path ${path}`);
    }
  }
});
