/**
 * `rate_limit`: a token bucket per key (the client address, a header's value or
 * a cookie's), refilled at `rate` and holding `burst` tokens; a request takes
 * one, and past it gets 429 with `Retry-After` and the IETF
 * `RateLimit-Policy`/`RateLimit` fields (a gRPC client: RESOURCE_EXHAUSTED).
 *
 * `store: local` keeps the buckets in this process, at most `max_keys` of them:
 * a bucket idle long enough to be full again is the same as none and goes, and
 * past the cap the least recently used goes. `store: redis://host:port` keeps
 * them in Redis, shared by every instance: one EVALSHA of a small Lua script
 * per decision, on a persistent connection; a failing or slow Redis lets the
 * request through (`on_store_error: allow`, the default) or answers 503
 * (`deny`), with a log line and a count.
 *
 * @module
 */
import type { RateLimitConfig } from "../config/policy.ts";
import type { PolicyAnswer, PolicyRequest, PolicyStep, StepResult } from "./policy.ts";
import { RedisConnection, RespError, type RespValue } from "./_redis.ts";

/** gRPC's RESOURCE_EXHAUSTED: what a gRPC client over its limit gets. */
export const GRPC_RESOURCE_EXHAUSTED = 8;
// A key's value longer than this is cut (bounds a bucket's memory and a Redis key's size).
const MAX_KEY_CHARS = 256;
// How often, at most, the local buckets are swept for idle ones, in ms.
const SWEEP_MS = 1000;

/** Where the step reports on its store (a log line, a metric). */
export interface RateLimitContext {
  /** The route's name (Redis keys are named after it, so a fleet shares them). */
  route: string;
  /** A warning line (the store failed) or an info line (it works again). */
  log?: { warn(message: string): void; info(message: string): void } | undefined;
  /** Counts a decision the store could not make, and what the request got. */
  onStoreError?: ((route: string, outcome: "allow" | "deny") => void) | undefined;
}

/** One decision: let through or not, tokens left, and when a token comes back. */
export interface Decision {
  /** True when the request took a token. */
  allowed: boolean;
  /** Tokens left in the bucket after it (a fraction while refilling). */
  tokens: number;
  /** When refused: ms until a token is back. */
  waitMs: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The buckets of one route kept in memory, at most `maxKeys` of them.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBuckets } from "./rate_limit.ts";
 * const b = new LocalBuckets(10, 2, 100); // 10/s, burst 2
 * assertEquals(b.take("a", 0).allowed, true);
 * assertEquals(b.take("a", 0).allowed, true);
 * assertEquals(b.take("a", 0), { allowed: false, tokens: 0, waitMs: 100 });
 * assertEquals(b.take("a", 100).allowed, true); // a token came back after 100 ms
 * for (let i = 0; i < 1000; i++) b.take(`k${i}`, 200);
 * assertEquals(b.size <= 100, true); // a flood of keys stays under max_keys
 * b.take("late", 5000); // a second on: the buckets full again by now (all of them) go
 * assertEquals(b.size, 1);
 * ```
 */
export class LocalBuckets {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #max: number;
  // insertion order is use order (a used bucket is moved to the end): the front is idle longest
  readonly #buckets = new Map<string, Bucket>();
  #swept = 0;

  /**
   * @param perSecond Tokens added per second.
   * @param burst Tokens a bucket holds at most.
   * @param maxKeys Buckets kept at most.
   */
  constructor(perSecond: number, burst: number, maxKeys: number) {
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#max = maxKeys;
  }

  /** Buckets held now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token from `key`'s bucket at `now` (ms), when it has one. */
  take(key: string, now: number): Decision {
    const buckets = this.#buckets;
    if (now - this.#swept >= SWEEP_MS) this.#sweep(now);
    let b = buckets.get(key);
    if (b !== undefined) buckets.delete(key);
    else {
      if (buckets.size >= this.#max) this.#evict(now);
      b = { tokens: this.#burst, at: now };
    }
    let tokens = Math.min(this.#burst, b.tokens + Math.max(0, now - b.at) * this.#perMs);
    let allowed = false;
    let waitMs = 0;
    if (tokens >= 1) {
      tokens -= 1;
      allowed = true;
    } else waitMs = Math.ceil((1 - tokens) / this.#perMs);
    b.tokens = tokens;
    b.at = now;
    buckets.set(key, b);
    return { allowed, tokens, waitMs };
  }

  /** The tokens `key`'s bucket holds at `now`, taking none. */
  peek(key: string, now: number): number {
    const b = this.#buckets.get(key);
    if (b === undefined) return this.#burst;
    return Math.min(this.#burst, b.tokens + Math.max(0, now - b.at) * this.#perMs);
  }

  // Drops the buckets at the front that are full again by now: as if never used.
  #sweep(now: number): void {
    this.#swept = now;
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs < this.#burst) break;
      this.#buckets.delete(key);
    }
  }

  // Makes room for one: the idle ones first, then the least recently used.
  #evict(now: number): void {
    this.#sweep(now);
    const buckets = this.#buckets;
    for (const key of buckets.keys()) {
      if (buckets.size < this.#max) break;
      buckets.delete(key);
    }
  }
}

// KEYS[1] the bucket; ARGV rate (tokens per ms), burst. Redis's own clock, so every
// instance agrees. Returns {allowed 0|1, tokens left, ms until a token is back}.
const SCRIPT = `local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = burst
if b[1] then
  tokens = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate)
end
local ok = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {ok, tostring(tokens), wait}
`;
let scriptSha: Promise<string> | undefined;

function sha1(text: string): Promise<string> {
  return crypto.subtle.digest("SHA-1", new TextEncoder().encode(text)).then((d) =>
    Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("")
  );
}

/**
 * The rate limit step of a route; `close()` ends its Redis connection.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { rateLimitStep } from "./rate_limit.ts";
 * import { PolicyRequest } from "./policy.ts";
 * const step = rateLimitStep({
 *   perSecond: 1, rate: "1/s", burst: 1, key: { kind: "header", name: "x-user" },
 *   store: "local", on_store_error: "allow", timeout: 100, max_keys: 10,
 * }, { route: "api" });
 * const from = (user: string) =>
 *   new PolicyRequest("GET", "a", "/", "::1", () => ["X-User", user]);
 * assertEquals(step.onRequest!(from("ann")), undefined);
 * const a = step.onRequest!(from("ann")) as { status: number; headers: string[] };
 * assertEquals(a.status, 429);
 * assertEquals(a.headers[0], "Retry-After: 1");
 * assertEquals(step.onRequest!(from("bob")), undefined); // another bucket
 * ```
 *
 * @param config The route's `rate_limit`.
 * @param context The route's name, and where store failures are told.
 */
export function rateLimitStep(
  config: RateLimitConfig,
  context: RateLimitContext,
): PolicyStep<StepResult> & { close(): void } {
  const { burst, rate, key } = config;
  const keyName = key.kind === "client_ip" ? "client_ip" : `${key.kind}:${key.name}`;
  const window = Math.max(1, Math.ceil(burst / config.perSecond));
  const policyField = `RateLimit-Policy: "default";q=${burst};w=${window}`;
  const where = config.store === "local"
    ? "in memory"
    : `in redis://${hostPort(config.store.host, config.store.port)}`;
  const summary = `${rate}, burst ${burst}, by ${keyName}, ${where}`;
  const keyOf = keyReader(config);
  const refuse = (bucket: string, waitMs: number): PolicyAnswer => {
    const secs = Math.max(1, Math.ceil(waitMs / 1000));
    return {
      policy: "rate_limit",
      status: 429,
      message: `rate limit ${rate} (burst ${burst}) by ${bucket} reached; retry in ${secs} s`,
      headers: [`Retry-After: ${secs}`, policyField, `RateLimit: "default";r=0;t=${secs}`],
      grpcStatus: GRPC_RESOURCE_EXHAUSTED,
    };
  };

  if (config.store === "local") {
    const buckets = new LocalBuckets(config.perSecond, burst, config.max_keys);
    return {
      name: "rate_limit",
      summary,
      onRequest(req: PolicyRequest, notes?: string[]): PolicyAnswer | undefined {
        const bucket = keyOf(req);
        const now = performance.now();
        if (notes !== undefined) {
          const held = buckets.peek(bucket, now);
          notes.push(
            `rate_limit: bucket ${bucket}: ${fmt(held)} of ${burst} tokens (${rate}; explain's ` +
              `own buckets start full, the running balancer's are its own): ` +
              (held >= 1 ? "passes" : "429"),
          );
        }
        const d = buckets.take(bucket, now);
        return d.allowed ? undefined : refuse(bucket, d.waitMs);
      },
      close() {},
    };
  }

  const store = config.store;
  const address = hostPort(store.host, store.port);
  const onError = config.on_store_error;
  const log = context.log;
  const redis = new RedisConnection(store.host, store.port, config.timeout, {
    down: (reason) =>
      log?.warn(
        `route ${context.route}: rate_limit store redis://${address} failed (${reason}): ` +
          (onError === "allow"
            ? "requests pass unlimited (on_store_error: allow)"
            : "requests get 503 (on_store_error: deny)"),
      ),
    up: () =>
      log?.info(`route ${context.route}: rate_limit store redis://${address} answers again`),
  });
  redis.onConnect = () => ["SCRIPT", "LOAD", SCRIPT];
  const perMs = String(config.perSecond / 1000);
  const prefix = `unload:rl:${context.route}:`;
  const failed = (): PolicyAnswer | undefined => {
    context.onStoreError?.(context.route, onError);
    if (onError === "allow") return undefined;
    return {
      policy: "rate_limit",
      status: 503,
      message: `the rate limit store is unavailable`,
      headers: ["Retry-After: 1"],
    };
  };
  const decide = async (bucket: string): Promise<PolicyAnswer | undefined> => {
    const sha = await (scriptSha ??= sha1(SCRIPT));
    let reply: RespValue;
    try {
      reply = await redis.call(["EVALSHA", sha, 1, prefix + bucket, perMs, burst]);
      if (reply instanceof RespError && reply.message.startsWith("NOSCRIPT")) {
        reply = await redis.call(["EVAL", SCRIPT, 1, prefix + bucket, perMs, burst]);
      }
    } catch {
      return failed(); // told once by the connection's down()
    }
    if (!Array.isArray(reply) || reply.length !== 3) {
      log?.warn(
        `route ${context.route}: rate_limit store redis://${address} answered ${
          reply instanceof RespError ? reply.message : JSON.stringify(reply)
        }`,
      );
      return failed();
    }
    return reply[0] === 1 ? undefined : refuse(bucket, Number(reply[2]));
  };
  return {
    name: "rate_limit",
    summary,
    onRequest(req: PolicyRequest, notes?: string[]) {
      const bucket = keyOf(req);
      if (notes !== undefined) {
        notes.push(
          `rate_limit: bucket ${bucket} is kept in redis://${address} (${rate}, burst ${burst}, ` +
            `shared by every instance): the balancer would ask it (explain does not)`,
        );
        return undefined;
      }
      return decide(bucket);
    },
    close() {
      redis.close();
    },
  };
}

// The bucket's name for a request: `client_ip 10.0.0.1`, `header:x-user ann`; a request
// without the header or cookie is counted by its client address.
function keyReader(config: RateLimitConfig): (req: PolicyRequest) => string {
  const key = config.key;
  if (key.kind === "client_ip") return (req) => `client_ip ${req.client}`;
  const label = `${key.kind}:${key.name}`;
  const find = key.kind === "header" ? headerValue : cookieValue;
  return (req) => {
    const v = find(req.fields, key.name);
    if (v === undefined) return `client_ip ${req.client}`;
    return `${label} ${v.length > MAX_KEY_CHARS ? v.slice(0, MAX_KEY_CHARS) : v}`;
  };
}

function headerValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toLowerCase() === name) return fields[i + 1]!;
  }
  return undefined;
}

function cookieValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toLowerCase() !== "cookie") continue;
    for (const pair of fields[i + 1]!.split(";")) {
      const eq = pair.indexOf("=");
      if (eq !== -1 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
    }
  }
  return undefined;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}
