/**
 * The gRPC health checking protocol (`grpc.health.v1.Health/Check`) on the wire,
 * without a `.proto`: the request is `HealthCheckRequest { string service = 1; }`
 * and the answer `HealthCheckResponse { ServingStatus status = 1; }`, each in a
 * gRPC length-prefixed message.
 *
 * @module
 */

/** The method's `:path`. */
export const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";

/** `HealthCheckResponse.ServingStatus` names by value. */
export const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;

/** The value of `SERVING`, the only status that passes. */
export const SERVING = 1;

/** gRPC status code names by value (`grpc-status`). */
export const GRPC_STATUS = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/**
 * The request body: one uncompressed gRPC message holding `service` (left out
 * when empty, as protobuf leaves out default values).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { healthCheckRequest } from "./grpc_health.ts";
 * assertEquals([...healthCheckRequest("")], [0, 0, 0, 0, 0]);
 * assertEquals([...healthCheckRequest("a")], [0, 0, 0, 0, 3, 0x0a, 1, 0x61]);
 * ```
 */
export function healthCheckRequest(service: string): Uint8Array {
  const name = new TextEncoder().encode(service);
  const len = varint(name.length);
  const size = name.length === 0 ? 0 : 1 + len.length + name.length;
  const out = new Uint8Array(5 + size);
  new DataView(out.buffer).setUint32(1, size);
  if (size > 0) {
    out[5] = 0x0a; // field 1, length-delimited
    out.set(len, 6);
    out.set(name, 6 + len.length);
  }
  return out;
}

/**
 * The serving status in a response body (the DATA of the call, one message).
 *
 * @returns the status value (0 `UNKNOWN` when the field is absent, as protobuf
 * leaves out default values), or a string saying why the body is not a
 * `HealthCheckResponse`.
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { servingStatus } from "./grpc_health.ts";
 * assertEquals(servingStatus(new Uint8Array([0, 0, 0, 0, 2, 0x08, 0x01])), 1);
 * assertEquals(servingStatus(new Uint8Array([0, 0, 0, 0, 2, 0x08, 0x02])), 2);
 * assertEquals(servingStatus(new Uint8Array([0, 0, 0, 0, 0])), 0);
 * assertEquals(typeof servingStatus(new Uint8Array([1, 0, 0, 0, 0])), "string");
 * ```
 */
export function servingStatus(body: Uint8Array): number | string {
  if (body.length < 5) return `a message of ${body.length} bytes, shorter than its prefix`;
  if (body[0] !== 0) return "a compressed message (none was asked for)";
  const size = new DataView(body.buffer, body.byteOffset, body.length).getUint32(1);
  if (body.length !== 5 + size) {
    return `a message prefix of ${size} bytes around ${body.length - 5} bytes`;
  }
  let status = 0;
  let i = 5;
  while (i < body.length) {
    const [tag, next] = readVarint(body, i);
    if (next < 0) return "a truncated protobuf field";
    i = next;
    const wire = tag & 7;
    if (wire === 0) {
      const [value, after] = readVarint(body, i);
      if (after < 0) return "a truncated protobuf varint";
      if (tag >>> 3 === 1) status = value;
      i = after;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const [len, after] = readVarint(body, i);
      if (after < 0) return "a truncated protobuf length";
      i = after + len;
    } else return `a protobuf field of wire type ${wire}`;
  }
  if (i !== body.length) return "a truncated protobuf field";
  return status;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

// [value, index after it] (up to 10 bytes, as protobuf writes 64-bit values), or [0, -1]
// when the bytes end first.
function readVarint(b: Uint8Array, i: number): [number, number] {
  let value = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (i >= b.length) return [0, -1];
    const byte = b[i++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, i];
  }
  return [0, -1];
}
