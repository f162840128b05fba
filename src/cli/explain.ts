/**
 * `unload explain`: what a request would go through, without sending anything:
 * the route it matches, each policy step's decision, the request line and
 * headers the backend would get, and the backend the scheduler would pick now.
 * It runs the same compiled steps as the proxy (`compilePolicy`,
 * `applyRequestPolicy`) and the same head writer (`forwardRequestHead`).
 *
 * @module
 */
import type { Config, RouteConfig } from "../config/config.ts";
import { Router } from "../proxy/router.ts";
import { compilePolicy } from "../policy/compile.ts";
import { PolicyRequest } from "../policy/policy.ts";
import { applyRequestPolicy } from "../proxy/policy_heads.ts";
import { forwardRequestHead, h2RequestFields } from "../proxy/forwarded.ts";
import type { Request } from "../proxy/client.ts";
import { parseRequestHead } from "../http1/parse.ts";
import { requestFraming } from "../http1/body.ts";
import { HOST, keepsAlive } from "../http1/fields.ts";
import { STATUS_TEXT } from "../http1/status.ts";
import { requestKey } from "../proxy/request_key.ts";
import { createScheduler } from "../scheduler/create.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import { resolveSrv } from "../upstream/discovery/srv.ts";
import type { Backend } from "../upstream/backend.ts";
import { count } from "../observe/count.ts";

/** What `explain` is asked about. */
export interface ExplainRequest {
  /** Request method, e.g. `GET`. */
  method: string;
  /** Absolute URL: scheme, host (with port, as a client would send it), path and query. */
  url: string;
  /** Client IP address the request comes from. @default {"127.0.0.1"} */
  client?: string;
  /** Extra request header lines, `Name: value`. */
  headers?: string[];
}

/**
 * The explanation of one request against `config`, as lines of text. SRV routes
 * get one lookup (only the route matched); nothing is sent to any backend.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseConfig } from "../config/config.ts";
 * import { explain } from "./explain.ts";
 * const config = parseConfig(
 *   "listen: { http: 127.0.0.1:8080 }\nroutes:\n  - name: app\n    backends: [{ address: 127.0.0.1:9001 }]\n    deny: [10.0.0.0/8]\n",
 *   "unload.yaml",
 * );
 * const out = await explain(config, { method: "GET", url: "http://a.test/x", client: "10.1.1.1" });
 * assert(out.includes("answer: 403 Forbidden by deny: access from 10.1.1.1 is not allowed"));
 * ```
 *
 * @throws {Error} when the URL or a header line is not valid, or an SRV lookup fails.
 */
export async function explain(config: Config, ask: ExplainRequest): Promise<string[]> {
  const url = new URL(ask.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`the URL must be http:// or https://: received "${ask.url}"`);
  }
  const client = ask.client ?? "127.0.0.1";
  const method = ask.method.toUpperCase();
  const target = url.pathname + url.search;
  let text = `${method} ${target} HTTP/1.1\r\n`;
  const extra = ask.headers ?? [];
  if (!extra.some((h) => /^host\s*:/i.test(h))) text += `Host: ${url.host}\r\n`;
  for (const h of extra) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/.test(h)) {
      throw new Error(`a header must be "Name: value": received "${h}"`);
    }
    text += `${h}\r\n`;
  }
  const head = parseRequestHead(text + "\r\n");
  const host = head.valueOf(HOST) ?? url.host;
  const req: Request = {
    head,
    framing: requestFraming(head),
    host,
    path: target,
    keepAlive: keepsAlive(head),
    upgrade: undefined,
  };
  const out: string[] = [`request: ${method} ${url.protocol}//${host}${target} from ${client}`];
  const router = new Router<RouteConfig>();
  for (const rc of config.routes) router.add({ host: rc.host, path: rc.path }, rc);
  const rc = router.match(host, target);
  if (rc === undefined) {
    out.push(`route: none: answer 404 Not Found (no route for ${host}${target})`);
    return out;
  }
  out.push(`route: ${rc.name} (host ${rc.host ?? "any"}, path ${rc.path})`);
  const policy = compilePolicy(rc.policy, { route: rc.name });
  let forwarded = req;
  if (policy === undefined) out.push("policy: none");
  else {
    const notes: string[] = [];
    const scheme = url.protocol === "https:" ? "https" : "http";
    const outcome = await applyRequestPolicy(policy, req, client, { notes, scheme });
    out.push("policy steps, in order:");
    for (const n of notes) out.push(`  ${n}`);
    if (outcome.answer !== undefined) {
      const a = outcome.answer;
      out.push(
        `answer: ${a.status} ${STATUS_TEXT[a.status] ?? ""} by ${a.policy}: ${a.message}`,
      );
      for (const h of a.headers) out.push(`  ${h}`);
      if (a.body !== undefined) out.push(`  (and its body, ${a.body.length} bytes)`);
      out.push("backend: none (the balancer answers)");
      return out;
    }
    forwarded = outcome.req;
    for (const s of policy.response) {
      out.push(
        `  then, on the response to the client: ${s.name}: ${s.responseSummary ?? s.summary}`,
      );
    }
    const body = policy.body;
    if (body !== undefined) {
      const h = forwarded.head;
      const p = new PolicyRequest(h.method, host, target, client, () => {
        const f: string[] = [];
        for (let i = 0; i < h.count; i++) f.push(h.rawName(i), h.value(i));
        return f;
      });
      out.push(
        `  last, on the response body: ${body.name}: ${body.explainResponse?.(p) ?? body.summary}`,
      );
    }
  }
  const info = {
    clientIp: client,
    proto: url.protocol === "https:" ? "https" : "http",
    host,
    framing: forwarded.framing,
    upgrade: undefined,
  };
  if (rc.backend_protocol === "http1") {
    out.push(`the backend gets (HTTP/1.1${rc.tls ? " over TLS" : ""}):`);
    const lines = forwardRequestHead(forwarded.head, info).split("\r\n").filter((l) => l !== "");
    for (const l of lines) out.push(`  ${l}`);
  } else {
    out.push(`the backend gets (HTTP/2${rc.tls ? " over TLS" : ", cleartext"}):`);
    out.push(`  :method: ${method}`, `  :scheme: ${rc.tls ? "https" : "http"}`);
    out.push(`  :authority: ${host}`, `  :path: ${forwarded.head.target}`);
    const fields = h2RequestFields(forwarded.head, info);
    for (let i = 0; i + 1 < fields.length; i += 2) out.push(`  ${fields[i]}: ${fields[i + 1]}`);
  }
  out.push(await pick(config, rc, forwarded, client));
  return out;
}

// The backend the route's scheduler would pick now, from a fresh scheduler over its
// static backends or one SRV lookup (health is not probed: nothing is sent).
async function pick(config: Config, rc: RouteConfig, req: Request, client: string) {
  let backends: Backend[];
  if (rc.backends !== undefined) backends = staticBackends(rc.backends);
  else {
    const ns = config.dns.nameserver;
    backends = await resolveSrv(rc.srv!, {
      ...(ns ? { nameServer: { ipAddr: ns.hostname, port: ns.port } } : {}),
    });
  }
  const key = rc.hash_key && requestKey(rc.hash_key, { head: req.head, clientIp: client });
  const b = createScheduler(rc.scheduler, backends).next(undefined, key);
  const from = rc.srv !== undefined ? `from ${rc.srv}, looked up now` : "static";
  if (b === undefined) return `backend: none (${from}): answer 503`;
  return `backend: ${b.id} (scheduler ${rc.scheduler} over ${
    count(backends.length, "backend")
  } ${from}; ` +
    `health not probed)`;
}
