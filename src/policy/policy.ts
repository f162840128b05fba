/**
 * A route's traffic policy as the proxy runs it: an ordered list of steps
 * (as pingora's phases, Envoy's filter chain or Traefik's middlewares), each
 * of which, on the way in, passes the request on, changes it, or answers it;
 * and on the way out may change the response head. The proxy runs the list and
 * knows no policy by name; a step that answers returns its answer and never
 * writes to a socket. A route without policy has no list at all.
 *
 * @module
 */

/** The request as steps see and change it (built only for routes with a policy). */
export class PolicyRequest {
  /** Request method. */
  readonly method: string;
  /** Host as the client sent it (Host header or absolute-form authority; may carry a port). */
  readonly host: string;
  /** Client IP address (the connection's peer). */
  readonly client: string;
  /** The path (no query) the backend will get; steps may change it. */
  path: string;
  /** The query with its leading "?", or "": kept by every rewrite. */
  readonly query: string;
  /** The scheme the client spoke to the balancer. */
  scheme: "http" | "https" = "http";
  /** True once a step changed the path or a field. */
  changed = false;
  #fields: string[] | undefined;
  readonly #readFields: () => string[];

  /**
   * @param method Request method.
   * @param host Host as sent.
   * @param target Path and query (origin form).
   * @param client Client IP address.
   * @param readFields Gives the header fields (flat `name, value, ...`), asked on first use.
   */
  constructor(
    method: string,
    host: string,
    target: string,
    client: string,
    readFields: () => string[],
  ) {
    this.method = method;
    this.host = host;
    this.client = client;
    const q = target.indexOf("?");
    this.path = q === -1 ? target : target.slice(0, q);
    this.query = q === -1 ? "" : target.slice(q);
    this.#readFields = readFields;
  }

  /** The header fields, flat `name, value, ...` as received (read on first use). */
  get fields(): string[] {
    return this.#fields ??= this.#readFields();
  }

  /** True when the fields were read (and so may have been changed). */
  get fieldsRead(): boolean {
    return this.#fields !== undefined;
  }

  /** Path and query: the target the backend gets. */
  get target(): string {
    return this.path + this.query;
  }
}

/** A step's answer to the client, instead of the backend's. */
export interface PolicyAnswer {
  /** The policy that answered, for the access log and metrics (`deny`, `allow`, `redirect`). */
  policy: string;
  /** HTTP status. */
  status: number;
  /** Why, shown to the client in the short body (4xx) and kept in the access log. */
  message: string;
  /**
   * Extra header lines (`Location: ...`), each without CRLF; with `body`, every
   * field of the answer but its `Content-Length` (which the balancer writes).
   */
  headers: string[];
  /**
   * The answer's own body (an auth service's login page), sent as it is instead
   * of the short text one; `message` then goes to the access log only.
   */
  body?: Uint8Array;
  /** The `grpc-status` a gRPC client gets. @default {gRPC's mapping of `status`} */
  grpcStatus?: number;
}

/**
 * A request as it is forwarded, offered to a step that copies requests
 * (`mirror`) once the request steps let it through.
 */
export interface CopyOffer {
  /** Request method. */
  readonly method: string;
  /**
   * The head the backend gets (after rewrite and headers), as HTTP/1.1 text.
   * When `bodyLength` is known (0 or more) it is whole, blank line included;
   * when it is not (-1), it lacks its framing field and blank line, for the
   * copy to add `Content-Length` once the body has ended. Made when asked.
   */
  head(): string;
  /** The body's length: 0 when there is none, -1 while unknown (chunked, an HTTP/2 stream). */
  readonly bodyLength: number;
  /** A gRPC call or a protocol upgrade: a stream, not a request that can be copied. */
  readonly stream: boolean;
}

/** A copy being made: the body's bytes as they are forwarded, then its end. */
export interface RequestCopy {
  /** Adds body bytes `buf[start..end)` (copied at once: `buf` is reused). */
  push(buf: Uint8Array, start: number, end: number): void;
  /** The body ended: the copy is complete. */
  end(): void;
  /** The body did not reach its end: the copy is given up. Does nothing after `end`. */
  abandon(): void;
}

/** What a request step decides: go on (undefined) or answer; later, for a step that asks a store. */
export type StepResult = PolicyAnswer | undefined | Promise<PolicyAnswer | undefined>;

/** What a body step sees of the exchange besides the response's fields. */
export interface ResponseContext {
  /** The request method. */
  readonly method: string;
  /** The response status. */
  readonly status: number;
  /** A request field's value by lower-case name (repeated ones joined by ", "), or undefined. */
  requestField(name: string): string | undefined;
  /** Set by a body step that changed the response's fields (else the head is sent as it came). */
  changed: boolean;
}

/**
 * Where an encoder's output goes, piece by piece: `piece` is a view of the
 * encoder's own buffer, valid until the promise returned (if any) settles.
 */
export type EncodedSink = (piece: Uint8Array) => Promise<void> | undefined;

/**
 * A response body's encoding, made for one response by a body step
 * (`compress`). The proxy writes each piece the backend sent, then ends it;
 * and closes it in every case (also when the exchange was abandoned).
 */
export interface BodyEncoder {
  /** The coding's name (`gzip`), for the access log and metrics. */
  readonly coding: string;
  /** Body bytes taken in so far. */
  readonly bytesIn: number;
  /** Encoded bytes given out so far. */
  readonly bytesOut: number;
  /**
   * Encodes `data` and flushes it: every encoded byte goes to `out` before the
   * promise settles (then `data` is no longer needed).
   */
  write(data: Uint8Array, out: EncodedSink): Promise<void>;
  /** Ends the encoding: its last bytes go to `out`. */
  end(out: EncodedSink): Promise<void>;
  /** Lets go of what it holds (native memory, its buffer); idempotent. */
  close(): void;
}

/**
 * One policy step of a route. `R` is what its `onRequest` gives: an answer or
 * nothing at once for most; {@linkcode StepResult} (maybe later) for a step
 * that asks a store.
 */
export interface PolicyStep<R extends StepResult = PolicyAnswer | undefined> {
  /** The policy's key in the config (`allow`, `redirect`, `rewrite`, `headers`). */
  readonly name: string;
  /** What it does, in one line, as `/status` and `explain` show it. */
  readonly summary: string;
  /**
   * On the way in: undefined to go on (having changed `req` or not), or an answer.
   * With `notes` (`explain`), a line saying what was decided and why is added
   * (and nothing is asked of a store). A promise only from a step that asks a
   * store (`rate_limit` with Redis); the others decide at once.
   */
  onRequest?(req: PolicyRequest, notes?: string[]): R;
  /** On the way out: changes the response's fields (flat `name, value, ...`) in place. */
  onResponse?(fields: string[]): void;
  /**
   * Once the request is forwarded: takes a copy of it (`mirror`), or declines
   * (undefined: not sampled, too large, no room).
   */
  onCopy?(offer: CopyOffer): RequestCopy | undefined;
  /** What `onResponse` does, in one line (for `explain`). */
  readonly responseSummary?: string;
  /**
   * Last on the way out, for a response with a body: an encoder for the body,
   * having changed `fields` to match (`Content-Encoding`, no `Content-Length`),
   * or undefined to leave the body as it is (maybe having changed `fields`,
   * e.g. `Vary`). At most one step of a route has it (`compress`).
   */
  onResponseBody?(fields: string[], res: ResponseContext): BodyEncoder | undefined;
  /** For `explain`: what the step would do to the response to `req`, in one line. */
  explainResponse?(req: PolicyRequest): string;
  /** Lets go of what the step holds (a store's connection) once its routes are replaced. */
  close?(): void;
  /** Settles (never rejects) once the step can work: a mirror's first SRV lookup is done. */
  readonly ready?: Promise<void>;
}

/** One step as `/status` shows it. */
export interface StepDescription {
  /** The policy's key in the config (`rewrite`, `mirror`). */
  name: string;
  /** What it does, in one line. */
  summary: string;
  /** What it does to responses, when it changes them. */
  response?: string;
}

/**
 * The compiled steps of one route, in DESIGN.md's order.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { PolicyRequest, RoutePolicy } from "./policy.ts";
 * const policy = new RoutePolicy([{
 *   name: "rewrite",
 *   summary: "path /a → /b",
 *   onRequest: (req) => {
 *     req.path = "/b";
 *     req.changed = true;
 *     return undefined;
 *   },
 * }]);
 * const req = new PolicyRequest("GET", "a.test", "/a?x=1", "10.0.0.1", () => []);
 * assertEquals(policy.runRequest(req), undefined);
 * assertEquals(req.target, "/b?x=1");
 * ```
 */
export class RoutePolicy {
  /** Every step, in order. */
  readonly steps: readonly PolicyStep<StepResult>[];
  /** The steps with an `onRequest`, in order. */
  readonly request: readonly PolicyStep<StepResult>[];
  /** The steps with an `onResponse`, in order; empty when response heads pass unchanged. */
  readonly response: readonly PolicyStep<StepResult>[];
  /** The step that copies forwarded requests (`mirror`), when there is one. */
  readonly copy: PolicyStep<StepResult> | undefined;
  /** The step with an `onResponseBody` (`compress`), run after `response`; usually none. */
  readonly body: PolicyStep<StepResult> | undefined;

  /** Keeps `steps` in the order given. */
  constructor(steps: readonly PolicyStep<StepResult>[]) {
    this.steps = steps;
    this.request = steps.filter((s) => s.onRequest !== undefined);
    this.response = steps.filter((s) => s.onResponse !== undefined);
    this.copy = steps.find((s) => s.onCopy !== undefined);
    this.body = steps.findLast((s) => s.onResponseBody !== undefined);
  }

  /** True when responses pass through unchanged (no response or body step). */
  get passesResponses(): boolean {
    return this.response.length === 0 && this.body === undefined;
  }

  /**
   * Runs the request steps until one answers; `notes` as for {@linkcode PolicyStep.onRequest}.
   * A promise only once a step gave one (the rest then run after it settles).
   */
  runRequest(req: PolicyRequest, notes?: string[]): StepResult {
    const steps = this.request;
    for (let i = 0; i < steps.length; i++) {
      const a = steps[i]!.onRequest!(req, notes);
      if (a === undefined) continue;
      if (a instanceof Promise) return this.#finish(a, i + 1, req, notes);
      return a;
    }
    return undefined;
  }

  async #finish(
    first: Promise<PolicyAnswer | undefined>,
    from: number,
    req: PolicyRequest,
    notes?: string[],
  ): Promise<PolicyAnswer | undefined> {
    const a = await first;
    if (a !== undefined) return a;
    const steps = this.request;
    for (let i = from; i < steps.length; i++) {
      const next = await steps[i]!.onRequest!(req, notes);
      if (next !== undefined) return next;
    }
    return undefined;
  }

  /** Settles (never rejects) once every step can work (see {@linkcode PolicyStep.ready}). */
  get ready(): Promise<unknown> {
    return Promise.all(this.steps.map((s) => s.ready));
  }

  /** Lets go of what the steps hold (called once the route is replaced or stopped). */
  close(): void {
    for (const s of this.steps) s.close?.();
  }

  /**
   * Runs the response steps over `fields` (flat `name, value, ...`), in place;
   * then, given `res` (a response with a body), the body step.
   *
   * @returns The body's encoder, when the body step chose one.
   */
  runResponse(fields: string[], res?: ResponseContext): BodyEncoder | undefined {
    const steps = this.response;
    for (let i = 0; i < steps.length; i++) steps[i]!.onResponse!(fields);
    if (res === undefined || this.body === undefined) return undefined;
    return this.body.onResponseBody!(fields, res);
  }

  /** One line per step, for `/status`. */
  get summaries(): string[] {
    return this.steps.map((s) => `${s.name}: ${s.summary}`);
  }

  /**
   * Each step's name, what it does on the way in, and on the way out when it
   * changes responses (for `/status` and the dashboard).
   */
  get described(): StepDescription[] {
    return this.steps.map((s) => {
      const d: StepDescription = { name: s.name, summary: s.summary };
      if (s.onResponse !== undefined || s.onResponseBody !== undefined) {
        d.response = s.responseSummary ?? s.summary;
      }
      return d;
    });
  }
}
