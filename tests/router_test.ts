import { assertEquals } from "@std/assert";
import { normalizeHost, Router } from "../src/proxy/router.ts";

function router(...routes: [host: string | undefined, path: string | undefined, name: string][]) {
  const r = new Router<string>();
  for (const [host, path, name] of routes) r.add({ host, path }, name);
  return r;
}

Deno.test("Router matches an exact host ignoring case and port", () => {
  const r = router(["app.test", undefined, "app"]);
  assertEquals(r.match("app.test", "/"), "app");
  assertEquals(r.match("APP.Test:8080", "/x"), "app");
  assertEquals(r.match("app.test.", "/x"), "app");
  assertEquals(r.match("other.test", "/"), undefined);
  assertEquals(r.match("", "/"), undefined);
});

Deno.test("Router lower-cases the host of a route added in upper case", () => {
  assertEquals(router(["App.TEST", "/", "app"]).match("app.test", "/"), "app");
});

Deno.test("Router matches a wildcard host on any depth of subdomain but not the bare domain", () => {
  const r = router(["*.example.test", undefined, "wild"]);
  assertEquals(r.match("a.example.test", "/"), "wild");
  assertEquals(r.match("a.b.example.test:80", "/"), "wild");
  assertEquals(r.match("example.test", "/"), undefined);
  assertEquals(r.match("badexample.test", "/"), undefined);
  assertEquals(r.match(".example.test", "/"), undefined);
});

Deno.test("Router prefers an exact host, then the longest wildcard, then a route for any host", () => {
  const r = router(
    [undefined, "/", "any"],
    ["*.test", "/", "short-wild"],
    ["*.app.test", "/", "long-wild"],
    ["www.app.test", "/", "exact"],
  );
  assertEquals(r.match("www.app.test", "/"), "exact");
  assertEquals(r.match("api.app.test", "/"), "long-wild");
  assertEquals(r.match("other.test", "/"), "short-wild");
  assertEquals(r.match("other.example", "/"), "any");
});

Deno.test("Router picks the longest path prefix within the same host", () => {
  const r = router(
    ["app.test", "/", "root"],
    ["app.test", "/api", "api"],
    ["app.test", "/api/v2", "v2"],
  );
  assertEquals(r.match("app.test", "/api/v2/users"), "v2");
  assertEquals(r.match("app.test", "/api/v1"), "api");
  assertEquals(r.match("app.test", "/apix"), "api"); // a plain string prefix, like nginx
  assertEquals(r.match("app.test", "/index.html"), "root");
});

Deno.test("Router host specificity beats path length", () => {
  const r = router([undefined, "/very/long/path", "any-long"], ["app.test", "/", "exact-root"]);
  assertEquals(r.match("app.test", "/very/long/path/x"), "exact-root");
  assertEquals(r.match("other.test", "/very/long/path/x"), "any-long");
});

Deno.test("Router host specificity beats path length even for paths of 8000 bytes", () => {
  const long = "/" + "p".repeat(8000);
  const r = router([undefined, long, "any-long"], ["*.a.test", "/", "wild"]);
  assertEquals(r.match("x.a.test", long + "/x"), "wild");
  const r2 = router(["*.a.test", long, "wild-long"], ["x.a.test", "/", "exact"]);
  assertEquals(r2.match("x.a.test", long), "exact");
});

Deno.test("Router falls back to a less specific host when the specific one has no matching path", () => {
  const r = router(["app.test", "/only", "app-only"], [undefined, "/", "web"]);
  assertEquals(r.match("app.test", "/only/x"), "app-only");
  assertEquals(r.match("app.test", "/other"), "web");
});

Deno.test("Router defaults a route's path to / and returns undefined with no routes", () => {
  assertEquals(router([undefined, undefined, "all"]).match("x", "/anything"), "all");
  assertEquals(new Router<string>().match("x", "/"), undefined);
});

Deno.test("Router keeps insertion order between equally specific routes", () => {
  const r = router(["a.test", "/x", "first"], ["a.test", "/y", "second"]);
  assertEquals(r.match("a.test", "/x"), "first");
  assertEquals(r.match("a.test", "/y"), "second");
});

Deno.test("normalizeHost lower-cases, strips the port and a trailing dot, keeps IPv6 brackets", () => {
  assertEquals(normalizeHost("App.Test:8080"), "app.test");
  assertEquals(normalizeHost("app.test."), "app.test");
  assertEquals(normalizeHost("app.test.:80"), "app.test");
  assertEquals(normalizeHost("[::1]:80"), "[::1]");
  assertEquals(normalizeHost("[::1]"), "[::1]");
  assertEquals(normalizeHost("10.0.0.1:443"), "10.0.0.1");
  assertEquals(normalizeHost("plain"), "plain");
  assertEquals(normalizeHost(""), "");
});
