/**
 * `auth.forward`: every request is first put to an auth service, as nginx's
 * `auth_request` and Traefik's ForwardAuth do. The service gets a `GET` of its
 * URL carrying the request's fields (no body; hop-by-hop fields, `Host` and
 * framing left out) and `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto` and
 * `-For`. A 2xx lets the request through, with the `copy_headers` fields of
 * the answer put on it (the client's own fields of those names removed first,
 * so that no client can forge them); any other answer goes back to the client
 * as it is: status, fields and body (a login redirect, a 401 with its page),
 * a body up to {@linkcode FORWARD_MAX_BODY} bytes.
 *
 * The service has `timeout` to answer: past it, 504; unreachable (refused,
 * reset, an answer that is no HTTP/1.1, a body too large), 503; a gRPC client
 * gets UNAUTHENTICATED for an answer that is no 2xx. Connections are pooled
 * and kept alive (the upstream pool of `src/upstream/pool.ts`: at most
 * {@linkcode FORWARD_MAX_CONNS} per route, {@linkcode FORWARD_MAX_IDLE} kept
 * idle, for 15 s); one that the service closed while idle is tried again once
 * on a fresh connection.
 *
 * @module
 */
import type { ForwardAuthConfig } from "../config/auth.ts";
import { createBackend } from "../upstream/backend.ts";
import { type BackendConn, ConnectError, Pool } from "../upstream/pool.ts";
import { readHead } from "../http1/head.ts";
import { parseResponse, ResponseHead } from "../http1/parse.ts";
import { ChunkedParser, CHUNKS_DONE, type Framing, responseFraming } from "../http1/body.ts";
import { keepsAlive } from "../http1/fields.ts";
import type { PolicyAnswer, PolicyRequest, PolicyStep, StepResult } from "./policy.ts";
import { type AuthContext, GRPC_UNAUTHENTICATED } from "./_auth.ts";

/** The largest auth service answer body passed on to the client, in bytes (64 KiB); larger: 503. */
export const FORWARD_MAX_BODY = 64 * 1024;
/** The largest auth service answer head, in bytes. */
export const FORWARD_MAX_HEAD = 16 * 1024;
/** Connections to the auth service per route at most (more requests wait for one). */
export const FORWARD_MAX_CONNS = 256;
/** Idle connections to the auth service kept per route. */
export const FORWARD_MAX_IDLE = 64;
const IDLE_TIMEOUT = 15_000;

// Fields of the service's answer never passed on to the client (hop-by-hop and framing).
const NOT_PASSED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "content-length",
]);
// Fields never sent to the auth service: those, and what it is told itself.
const NOT_SENT = new Set([
  ...NOT_PASSED,
  "expect",
  "host",
  "x-forwarded-method",
  "x-forwarded-uri",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-for",
]);

/** What the service answered. */
interface Reply {
  status: number;
  /** Fields, flat `name, value, ...` as received. */
  fields: string[];
  body: Uint8Array;
}

/** Why no reply came: the service took too long, or could not be reached or read. */
class AskError extends Error {
  readonly timedOut: boolean;
  constructor(message: string, timedOut: boolean) {
    super(message);
    this.timedOut = timedOut;
  }
}

/**
 * The forward auth step of a route; `close()` closes its connections.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { forwardAuthStep } from "./auth_forward.ts";
 * import { PolicyRequest } from "./policy.ts";
 * const auth = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) =>
 *   req.headers.get("authorization") === "Bearer ok"
 *     ? new Response(null, { headers: { "X-User": "ann" } })
 *     : Response.redirect("https://sso.test/login?rd=" + req.headers.get("x-forwarded-uri"), 302));
 * const step = forwardAuthStep({
 *   url: "", hostname: "127.0.0.1", port: auth.addr.port, path: "/check",
 *   copy_headers: ["X-User"], timeout: 2000,
 * }, { route: "r" });
 * const ask = (token: string) =>
 *   new PolicyRequest("GET", "a", "/x?y", "::1", () => ["Authorization", token, "X-User", "eve"]);
 * const passed = ask("Bearer ok");
 * assertEquals(await step.onRequest!(passed), undefined);
 * assertEquals(passed.fields, ["Authorization", "Bearer ok", "X-User", "ann"]);
 * const sent = await step.onRequest!(ask("Bearer no"));
 * assertEquals(sent?.status, 302);
 * assertEquals(sent?.headers.filter((h) => /^location:/i.test(h)), ["Location: https://sso.test/login?rd=/x?y"]);
 * step.close();
 * await auth.shutdown();
 * ```
 *
 * @param config The route's `auth.forward`.
 * @param context The route's name, and where decisions and failures are told.
 */
export function forwardAuthStep(
  config: ForwardAuthConfig,
  context: AuthContext,
): PolicyStep<StepResult> & { close(): void } {
  const { hostname, port, path, timeout } = config;
  const backend = createBackend({ hostname, port });
  const pool = new Pool(backend, {
    maxIdle: FORWARD_MAX_IDLE,
    maxConns: FORWARD_MAX_CONNS,
    idleTimeout: IDLE_TIMEOUT,
    connectTimeout: timeout,
  });
  const authority = port === 80 ? backend.id.replace(/:80$/, "") : backend.id;
  const copy = config.copy_headers.map((n) => n.toLowerCase());
  const where = `http://${backend.id}${path}`;
  const summary = `forward to ${where}` +
    (copy.length > 0 ? `, copying ${config.copy_headers.join(", ")}` : "") +
    `, timeout ${timeout}ms`;
  const route = context.route;
  const count = (result: string) => context.onAuth?.(route, "forward", result);
  let failing = false; // a warning once per outage

  const failed = (e: unknown): PolicyAnswer => {
    const timedOut = (e instanceof AskError && e.timedOut) ||
      (e instanceof ConnectError && e.timedOut);
    count(timedOut ? "timeout" : "unreachable");
    const why = `auth service ${where} ${
      timedOut ? `did not answer within ${timeout}ms` : `failed: ${(e as Error).message}`
    }`;
    if (!failing) context.log?.warn(`route ${route}: ${why}`);
    failing = true;
    return { policy: "auth", status: timedOut ? 504 : 503, message: why, headers: [] };
  };

  const decide = (req: PolicyRequest, reply: Reply): PolicyAnswer | undefined => {
    failing = false;
    const { status, fields } = reply;
    if (status >= 200 && status < 300) {
      count("allowed");
      if (copy.length > 0) {
        const mine = req.fields;
        for (let i = mine.length - 2; i >= 0; i -= 2) {
          if (copy.includes(mine[i]!.toLowerCase())) mine.splice(i, 2);
        }
        for (let i = 0; i + 1 < fields.length; i += 2) {
          const name = fields[i]!.toLowerCase();
          const at = copy.indexOf(name);
          if (at !== -1) mine.push(config.copy_headers[at]!, fields[i + 1]!);
        }
        req.changed = true;
      }
      return undefined;
    }
    count("denied");
    const headers: string[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (!NOT_PASSED.has(fields[i]!.toLowerCase())) headers.push(`${fields[i]}: ${fields[i + 1]}`);
    }
    return {
      policy: "auth",
      status,
      message: `auth service ${where} answered ${status}`,
      headers,
      body: reply.body,
      grpcStatus: GRPC_UNAUTHENTICATED,
    };
  };

  const ask = async (req: PolicyRequest): Promise<PolicyAnswer | undefined> => {
    const head = requestHead(req, path, authority);
    const deadline = new AbortController();
    let timedOut = false;
    let conn: BackendConn | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
      conn?.close(); // unblocks a read or write in progress
    }, timeout);
    try {
      for (let fresh = false;; fresh = true) {
        conn = await pool.acquire(fresh, deadline);
        if (timedOut) { // waited for a free connection past the deadline: give it back unused
          pool.release(conn, true);
          throw new AskError("timed out", true);
        }
        const reused = conn.uses > 0;
        try {
          const reply = await exchange(conn, head);
          if (timedOut) throw new AskError("timed out", true); // a body cut by the deadline
          pool.release(conn, reply.reusable);
          return decide(req, reply);
        } catch (e) {
          pool.release(conn, false);
          // a kept connection the service closed meanwhile: once more on a new one
          if (!timedOut && reused && e instanceof AskError && e.message === "closed") continue;
          throw e;
        }
      }
    } catch (e) {
      return failed(timedOut ? new AskError("timed out", true) : e);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    name: "auth",
    summary,
    onRequest(req: PolicyRequest, notes?: string[]): StepResult {
      if (notes !== undefined) {
        notes.push(
          `auth: would ask ${where} (explain sends nothing): a 2xx lets the request through` +
            (copy.length > 0 ? ` with ${config.copy_headers.join(", ")} from its answer` : "") +
            `, any other answer goes to the client; shown here as passed`,
        );
        return undefined;
      }
      return ask(req);
    },
    close() {
      pool.drain();
    },
  };
}

// The head of the auth request: GET of the service's path, the client's fields, X-Forwarded-*.
function requestHead(req: PolicyRequest, path: string, authority: string): string {
  const fields = req.fields;
  const dropped = new Set(NOT_SENT);
  for (let i = 0; i + 1 < fields.length; i += 2) { // and what Connection names as hop-by-hop
    if (fields[i]!.toLowerCase() !== "connection") continue;
    for (const t of fields[i + 1]!.split(",")) dropped.add(t.trim().toLowerCase());
  }
  let text = `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (!dropped.has(fields[i]!.toLowerCase())) text += `${fields[i]}: ${fields[i + 1]}\r\n`;
  }
  return text + `X-Forwarded-Method: ${req.method}\r\nX-Forwarded-Proto: ${req.scheme}\r\n` +
    `X-Forwarded-Host: ${req.host}\r\nX-Forwarded-Uri: ${req.target}\r\n` +
    `X-Forwarded-For: ${req.client}\r\n\r\n`;
}

// One request and its answer on `conn`.
async function exchange(conn: BackendConn, head: string): Promise<Reply & { reusable: boolean }> {
  const { reader, writer } = conn;
  try {
    writer.writeString(head);
    await writer.flush();
  } catch {
    throw new AskError("closed", false);
  }
  for (;;) {
    let end: number;
    try {
      end = await readHead(reader, { maxHead: FORWARD_MAX_HEAD }, true);
    } catch (e) {
      if (reader.buffered === 0 && !(e instanceof Error && e.name === "HttpError")) {
        throw new AskError("closed", false);
      }
      throw new AskError(`bad answer: ${(e as Error).message}`, false);
    }
    if (end === -1) throw new AskError("closed", false);
    let res: ResponseHead;
    let framing: Framing;
    try {
      res = parseResponse(new ResponseHead(), reader.buf, reader.start, end);
      framing = responseFraming(res, "GET");
    } catch (e) {
      throw new AskError(`bad answer: ${(e as Error).message}`, false);
    }
    const fields: string[] = [];
    for (let i = 0; i < res.count; i++) fields.push(res.rawName(i), res.value(i));
    const status = res.status;
    const reusable = keepsAlive(res) && framing.kind !== "close";
    reader.consume(end - reader.start);
    if (status < 200) continue; // 100 Continue, 103 Early Hints: the answer follows
    const body = await readBody(conn, framing);
    return { status, fields, body, reusable };
  }
}

// The answer's body, up to FORWARD_MAX_BODY bytes.
async function readBody(conn: BackendConn, framing: Framing): Promise<Uint8Array> {
  const reader = conn.reader;
  const parts: Uint8Array[] = [];
  let size = 0;
  const more = async () => {
    if (!(await reader.fill().catch(() => false))) {
      throw new AskError("answer cut short", false);
    }
  };
  const take = (n: number) => {
    size += n;
    if (size > FORWARD_MAX_BODY) {
      throw new AskError(`answer body over ${FORWARD_MAX_BODY} bytes`, false);
    }
    parts.push(reader.buf.slice(reader.start, reader.start + n));
    reader.consume(n);
  };
  if (framing.kind === "length") {
    for (let left = framing.length; left > 0;) {
      if (reader.buffered === 0) await more();
      const n = Math.min(left, reader.buffered);
      take(n);
      left -= n;
    }
  } else if (framing.kind === "close") {
    for (;;) {
      if (reader.buffered > 0) take(reader.buffered);
      if (!(await reader.fill().catch(() => false))) break;
    }
  } else if (framing.kind === "chunked") {
    const chunks = new ChunkedParser(502);
    while (chunks.state !== CHUNKS_DONE) {
      if (chunks.inData) {
        if (reader.buffered === 0) await more();
        const n = Math.min(chunks.remaining, reader.buffered);
        take(n);
        chunks.remaining -= n;
        if (chunks.remaining === 0) chunks.dataDone();
        continue;
      }
      let pos: number;
      try {
        pos = chunks.framing(reader.buf, reader.start, reader.end);
      } catch (e) {
        throw new AskError(`bad answer: ${(e as Error).message}`, false);
      }
      reader.consume(pos - reader.start);
      if (chunks.state !== CHUNKS_DONE && !chunks.inData) await more();
    }
  }
  if (parts.length === 1) return parts[0]!;
  const body = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    body.set(p, at);
    at += p.length;
  }
  return body;
}
