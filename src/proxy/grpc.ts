/**
 * gRPC as the proxy sees it (the HTTP/2 protocol of gRPC's
 * doc/PROTOCOL-HTTP2.md): which requests are gRPC, the `grpc-timeout` deadline,
 * the statuses the balancer answers with, and where messages end in a relayed
 * body (so that a call can still be ended with a status in trailers).
 *
 * @module
 */

/** The gRPC status codes the balancer sends itself. */
export const GrpcStatus = {
  /** The call ran past its deadline (`grpc-timeout`, `timeouts.max_stream_duration`). */
  DEADLINE_EXCEEDED: 4,
  /** The backend could not be reached or was lost: clients may retry. */
  UNAVAILABLE: 14,
} as const;

// gRPC status codes for the HTTP statuses the balancer answers with itself (gRPC's
// own HTTP-to-gRPC mapping: doc/http-grpc-status-mapping.md).
const GRPC_CODES: Readonly<Record<number, number>> = {
  400: 13, // INTERNAL
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 12, // UNIMPLEMENTED
  429: 14, // UNAVAILABLE
  502: 14,
  503: 14,
  504: 14,
};
const GRPC_UNKNOWN = 2;

/**
 * The gRPC status for an HTTP status the balancer answers with (gRPC's HTTP
 * mapping: 404 UNIMPLEMENTED, 502/503/504 UNAVAILABLE, others UNKNOWN).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { grpcStatusOf } from "./grpc.ts";
 * assertEquals([grpcStatusOf(503), grpcStatusOf(404), grpcStatusOf(500)], [14, 12, 2]);
 * ```
 */
export function grpcStatusOf(httpStatus: number): number {
  return GRPC_CODES[httpStatus] ?? GRPC_UNKNOWN;
}

/**
 * `text` as a `grpc-message` value: bytes outside printable ASCII, and "%"
 * itself, percent-encoded.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { grpcMessage } from "./grpc.ts";
 * assertEquals(grpcMessage("100% gone\n"), "100%25 gone%0A");
 * ```
 */
export function grpcMessage(text: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25
      ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
      : String.fromCharCode(byte);
  }
  return out;
}

/**
 * True when HTTP/2 request fields (flat `name, value, ...`) say gRPC
 * (`content-type: application/grpc`, `application/grpc+proto`, ...).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { isGrpc } from "./grpc.ts";
 * assert(isGrpc(["te", "trailers", "content-type", "application/grpc+proto"]));
 * assert(!isGrpc(["content-type", "application/json"]));
 * ```
 */
export function isGrpc(fields: readonly string[]): boolean {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "content-type") return fields[i + 1]!.startsWith("application/grpc");
  }
  return false;
}

const GRPC_TIMEOUT_REGEXP = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * A `grpc-timeout` value (`TimeoutValue TimeoutUnit`: at most 8 digits, then
 * one of `H M S m u n`) in whole milliseconds, rounded up so that a deadline
 * under 1 ms is not none; -1 when it is malformed (the header is then ignored,
 * as gRPC servers do).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseGrpcTimeout } from "./grpc.ts";
 * assertEquals(parseGrpcTimeout("1S"), 1000);
 * assertEquals(parseGrpcTimeout("250m"), 250);
 * assertEquals(parseGrpcTimeout("10u"), 1);
 * assertEquals(parseGrpcTimeout("1.5S"), -1);
 * ```
 */
export function parseGrpcTimeout(value: string): number {
  const m = GRPC_TIMEOUT_REGEXP.exec(value);
  if (m === null) return -1;
  return Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!);
}

/**
 * Follows the length-prefixed messages of a gRPC body (a flag byte, a 4-byte
 * big-endian length, the message) through the chunks it is relayed in, to tell
 * whether it stops between two messages. Only there may a call that lost its
 * backend be ended with a status in trailers: a client given half a message
 * and then a status would fail on the message.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { GrpcMessageBoundary } from "./grpc.ts";
 * const b = new GrpcMessageBoundary();
 * b.push(new Uint8Array([0, 0, 0, 0, 3, 1])); // a 3-byte message, 1 byte of it
 * assert(!b.atBoundary);
 * b.push(new Uint8Array([2, 3, 0, 0, 0, 0, 0])); // its end, then an empty message
 * assert(b.atBoundary);
 * ```
 */
export class GrpcMessageBoundary {
  #prefix = 0; // bytes of the current 5-byte prefix seen
  #length = 0; // the length, as its bytes come
  #left = 0; // bytes of the current message still to come

  /** Follows `chunk`, the next bytes of the body. */
  push(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      const left = this.#left;
      if (left > 0) {
        const take = Math.min(left, n - i);
        this.#left = left - take;
        i += take;
        continue;
      }
      const at = this.#prefix;
      if (at > 0) this.#length = this.#length * 256 + chunk[i]!; // bytes 1..4: the length
      i++;
      if (at === 4) {
        this.#left = this.#length;
        this.#length = 0;
        this.#prefix = 0;
      } else this.#prefix = at + 1;
    }
  }

  /** True when the bytes so far end with a whole message (or there were none). */
  get atBoundary(): boolean {
    return this.#prefix === 0 && this.#left === 0;
  }
}
