/**
 * `auth.basic`: HTTP Basic authentication against the bcrypt lines of an
 * htpasswd file (Apache's `htpasswd -B` writes `$2y$`, Caddy's `hash-password`
 * `$2a$`). A request without valid credentials gets 401 with
 * `WWW-Authenticate: Basic realm="..."` (a gRPC client: UNAUTHENTICATED).
 *
 * A full bcrypt check costs tens of milliseconds of CPU at a realistic cost
 * (10-12), so:
 * - credentials once verified are kept, as Caddy does, for
 *   {@linkcode BASIC_CACHE_TTL} ms, at most {@linkcode BASIC_CACHE_MAX} of them
 *   per route (the oldest go first), keyed by a SHA-256 of the credentials as
 *   sent (no password is kept in the clear); a logged-in client's next requests
 *   cost a base64 decoding, a SHA-256 (`node:crypto`, about 3 µs) and a map
 *   look-up;
 * - the checks run in a Worker (`_bcrypt.ts`), never on the event loop, and the
 *   same credentials asked for at once are checked once;
 * - at most {@linkcode BASIC_MAX_PENDING} checks per route wait or run at once:
 *   past that, 503 with `Retry-After: 1`, so a password-guessing flood costs
 *   one core at most and never the other connections' event loop;
 * - an unknown user is checked against a real hash of the file all the same
 *   (the costliest, and refused), so that it takes no less time than a wrong
 *   password.
 *
 * @module
 */
import { createHash } from "node:crypto";
import bcrypt from "bcryptjs";
import type { BasicAuthConfig } from "../config/auth.ts";
import type { PolicyAnswer, PolicyRequest, PolicyStep, StepResult } from "./policy.ts";
import { type AuthContext, fieldValue, GRPC_UNAUTHENTICATED } from "./_auth.ts";
import { BcryptWorker } from "./_bcrypt.ts";

/** How long verified credentials are kept, in ms (5 minutes). */
export const BASIC_CACHE_TTL = 5 * 60_000;
/** Verified credentials kept per route at most. */
export const BASIC_CACHE_MAX = 1024;
/** bcrypt checks waiting or running per route at most; past it, 503. */
export const BASIC_MAX_PENDING = 16;

const BASIC_REGEXP = /^Basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The decoded bytes (`user:password`) of a `Basic` Authorization value, or
 * undefined when it is none (another scheme, bad base64).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { basicBytes } from "./auth_basic.ts";
 * assertEquals(basicBytes("basic " + btoa("ann:x")), new TextEncoder().encode("ann:x"));
 * assertEquals(basicBytes("Bearer abc"), undefined);
 * ```
 */
export function basicBytes(value: string | undefined): Uint8Array | undefined {
  const m = value === undefined ? null : BASIC_REGEXP.exec(value);
  if (!m) return undefined;
  let text: string;
  try {
    text = atob(m[1]!);
  } catch {
    return undefined;
  }
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * The user and password of a `Basic` Authorization value, or undefined when it
 * is none (another scheme, bad base64, no colon, not UTF-8).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { basicCredentials } from "./auth_basic.ts";
 * assertEquals(basicCredentials("Basic " + btoa("ann:se:cret")), ["ann", "se:cret"]);
 * assertEquals(basicCredentials("Bearer abc"), undefined);
 * ```
 */
export function basicCredentials(value: string | undefined): [string, string] | undefined {
  const bytes = basicBytes(value);
  return bytes === undefined ? undefined : splitCredentials(bytes);
}

function splitCredentials(bytes: Uint8Array): [string, string] | undefined {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return undefined;
  }
  const colon = text.indexOf(":");
  return colon === -1 ? undefined : [text.slice(0, colon), text.slice(colon + 1)];
}

/**
 * The basic auth step of a route; `close()` ends its Worker.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { basicAuthStep } from "./auth_basic.ts";
 * import { PolicyRequest } from "./policy.ts";
 * // htpasswd -nbB -C 4 ann secret
 * const users: [string, string][] = [["ann", "$2y$04$X7z7hh0dzC8B9rostaEIT.xkPvH2Fnqlzw9eAyyJ1HEyPXx9k3aO."]];
 * const seen: string[] = [];
 * const step = basicAuthStep({ realm: "ops", htpasswd: "u", users }, {
 *   route: "r", onAuth: (_route, _kind, result) => void seen.push(result),
 * });
 * const as = (auth?: string) =>
 *   new PolicyRequest("GET", "a", "/", "::1", () => auth ? ["Authorization", auth] : []);
 * const none = step.onRequest!(as()) as { status: number; headers: string[] };
 * assertEquals([none.status, none.headers], [401, ['WWW-Authenticate: Basic realm="ops"']]);
 * assertEquals(await step.onRequest!(as("Basic " + btoa("ann:secret"))), undefined);
 * assertEquals(step.onRequest!(as("Basic " + btoa("ann:secret"))), undefined); // from the cache
 * assertEquals((await step.onRequest!(as("Basic " + btoa("ann:nope"))))?.status, 401);
 * assertEquals(seen, ["missing", "verified", "cached", "refused"]);
 * step.close();
 * ```
 *
 * @param config The route's `auth.basic`, its users read.
 * @param context The route's name, and where decisions are counted.
 */
export function basicAuthStep(
  config: BasicAuthConfig,
  context: AuthContext,
): PolicyStep<StepResult> & { close(): void } {
  const { realm, users: list } = config;
  const users = new Map(list);
  // an unknown user is checked against a real hash (of the highest cost), then refused
  let dummy: string | undefined;
  for (const [, hash] of list) {
    if (dummy === undefined || hash.slice(4, 6) > dummy.slice(4, 6)) dummy = hash;
  }
  const challenge = [`WWW-Authenticate: Basic realm="${realm}"`];
  const route = context.route;
  const count = (result: string) => context.onAuth?.(route, "basic", result);
  const refuse = (message: string): PolicyAnswer => ({
    policy: "auth",
    status: 401,
    message,
    headers: challenge,
    grpcStatus: GRPC_UNAUTHENTICATED,
  });
  const cache = new Map<string, number>(); // credentials' hash → when it expires
  const checking = new Map<string, Promise<boolean>>();
  const worker = new BcryptWorker();
  const summary = `basic, realm "${realm}", ${list.length} user${
    list.length === 1 ? "" : "s"
  } from ${config.htpasswd}`;

  // `joined`: the request waited for a check another one started (it paid no bcrypt)
  const verified = (key: string, ok: boolean, joined = false): PolicyAnswer | undefined => {
    if (!ok) {
      count("refused");
      return refuse("wrong user or password");
    }
    if (joined) {
      count("cached");
      return undefined;
    }
    count("verified");
    if (cache.size >= BASIC_CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, performance.now() + BASIC_CACHE_TTL);
    return undefined;
  };

  return {
    name: "auth",
    summary,
    onRequest(req: PolicyRequest, notes?: string[]): StepResult {
      const bytes = basicBytes(fieldValue(req.fields, "authorization"));
      // a logged-in client's request: a SHA-256 of the credentials as sent, and a look-up
      const key = bytes === undefined || notes !== undefined
        ? ""
        : createHash("sha256").update(bytes).digest("base64");
      const expires = key === "" ? undefined : cache.get(key);
      if (expires !== undefined) {
        if (expires > performance.now()) {
          count("cached");
          return undefined;
        }
        cache.delete(key);
      }
      const creds = bytes && splitCredentials(bytes);
      if (creds === undefined) {
        notes?.push(`auth: no Basic credentials in Authorization (${summary}): 401`);
        count("missing");
        return refuse("authentication required");
      }
      const [user, password] = creds;
      const hash = users.get(user);
      if (notes !== undefined) {
        // explain checks at once, on its own thread: it serves nobody else
        const ok = hash !== undefined && bcrypt.compareSync(password, hash);
        notes.push(
          `auth: user ${user}: ` +
            (ok ? "valid credentials: passes" : "unknown user or wrong password: 401"),
        );
        return ok ? undefined : refuse("wrong user or password");
      }
      let check = checking.get(key);
      const joined = check !== undefined;
      if (check === undefined) {
        if (dummy === undefined) return verified(key, false);
        if (worker.pending >= BASIC_MAX_PENDING) {
          count("busy");
          return {
            policy: "auth",
            status: 503,
            message: "too many password checks in progress",
            headers: ["Retry-After: 1"],
          };
        }
        const known = hash !== undefined;
        check = worker.verify(password, hash ?? dummy).then((ok) => ok && known);
        checking.set(key, check);
        check.then(() => checking.delete(key));
      }
      return check.then((ok) => verified(key, ok, joined));
    },
    close() {
      worker.close();
    },
  };
}
