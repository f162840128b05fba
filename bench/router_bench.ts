/**
 * Cost of finding a request's route among 10, 1,000 and 10,000 routes, against the
 * linear scan the router used before (tests/_linear_router.ts, the baseline of each
 * group). Each iteration makes {@linkcode MATCHES} matches: divide the time per
 * iteration by 1000 for the time per match.
 *
 * - "exact hosts": routes `h<i>.tenant.test` + `/p<i>`; the request is for the last
 *   one, with the same Host each time (a keep-alive client) or a different one of 64
 *   hosts each time (which also normalises the Host and looks its routes up anew).
 * - "wildcards": routes `*.w<i>.tenant.test`; the request is for `a.b.w<last>.tenant.test`.
 * - "paths": one host with routes `/api/<i>`; the request is for the last path.
 * - "build": adding every route to an empty router (one build per iteration).
 *
 *     deno bench bench/router_bench.ts
 *
 * @module
 */
import { Router } from "../src/proxy/router.ts";
import { LinearRouter } from "../tests/_linear_router.ts";

const MATCHES = 1000;
const SIZES = [10, 1_000, 10_000];

interface Matcher {
  add(match: { host?: string; path?: string }, value: number): void;
  match(host: string, path: string): number | undefined;
}

const KINDS = {
  router: () => new Router<number>() as Matcher,
  linear: () => new LinearRouter<number>() as Matcher,
};

function exactHosts(m: Matcher, size: number): Matcher {
  for (let i = 0; i < size; i++) m.add({ host: `h${i}.tenant.test`, path: `/p${i}` }, i);
  return m;
}

for (const size of SIZES) {
  const last = size - 1;
  const hosts = Array.from({ length: 64 }, (_, i) => `h${last - (i % size)}.tenant.test:8080`);
  const paths = hosts.map((_, i) => `/p${last - (i % size)}/index.html`);
  for (const [kind, make] of Object.entries(KINDS)) {
    const group = `${size} routes`;
    const baseline = kind === "linear";
    const exact = exactHosts(make(), size);
    const host = `h${last}.tenant.test`;
    const path = `/p${last}/index.html`;
    Deno.bench({
      name: `${kind}: exact hosts, same Host, ${MATCHES} matches`,
      group: `${group}, same Host`,
      baseline,
      fn() {
        for (let i = 0; i < MATCHES; i++) if (exact.match(host, path) !== last) throw new Error();
      },
    });
    Deno.bench({
      name: `${kind}: exact hosts, 64 Hosts in turn, ${MATCHES} matches`,
      group: `${group}, 64 Hosts`,
      baseline,
      fn() {
        for (let i = 0; i < MATCHES; i++) exact.match(hosts[i & 63]!, paths[i & 63]!);
      },
    });
    const wild = make();
    for (let i = 0; i < size; i++) wild.add({ host: `*.w${i}.tenant.test` }, i);
    const wildHost = `a.b.w${last}.tenant.test`;
    Deno.bench({
      name: `${kind}: wildcards, ${MATCHES} matches`,
      group: `${group}, wildcards`,
      baseline,
      fn() {
        for (let i = 0; i < MATCHES; i++) if (wild.match(wildHost, "/") !== last) throw new Error();
      },
    });
    const onePath = make();
    for (let i = 0; i < size; i++) onePath.add({ host: "app.test", path: `/api/${i}` }, i);
    const apiPath = `/api/${last}/users`;
    Deno.bench({
      name: `${kind}: one host's paths, ${MATCHES} matches`,
      group: `${group}, paths`,
      baseline,
      fn() {
        for (let i = 0; i < MATCHES; i++) {
          if (onePath.match("app.test", apiPath) !== last) throw new Error();
        }
      },
    });
  }
  Deno.bench({
    name: `router: build ${size} exact-host routes`,
    group: "build",
    fn() {
      exactHosts(new Router<number>(), size);
    },
  });
}
