/**
 * Header rewriting on the way through: hop-by-hop fields removed (RFC 9110 §7.6.1),
 * `X-Forwarded-*` and `Via` added.
 *
 * @module
 */
import {
  CONNECTION,
  CONTENT_LENGTH,
  type Fields,
  HOST,
  KEEP_ALIVE,
  knownName,
  latin1,
  octets,
  PROXY_CONNECTION,
  TE,
  TRANSFER_ENCODING,
  UPGRADE,
  VIA,
  X_FORWARDED_FOR,
  X_FORWARDED_HOST,
  X_FORWARDED_PROTO,
} from "../http1/fields.ts";
import type { RequestHead, ResponseHead } from "../http1/parse.ts";
import type { Framing } from "../http1/body.ts";
import { STATUS_TEXT } from "../http1/status.ts";

// Hop-by-hop fields (RFC 9110 §7.6.1), and the framing fields the balancer writes itself:
// never forwarded as received.
const HOP_BY_HOP_IDS = [
  CONNECTION,
  KEEP_ALIVE,
  PROXY_CONNECTION,
  TE,
  UPGRADE,
  TRANSFER_ENCODING,
  CONTENT_LENGTH,
];
const HOP_BY_HOP = new Set(HOP_BY_HOP_IDS.map(knownName));
const HOP_IDS = HOP_BY_HOP_IDS.reduce((mask, id) => mask | (1 << id), 0);
// dropped from requests: the balancer writes its own
const REQUEST_DROP = HOP_IDS | (1 << VIA) | (1 << X_FORWARDED_FOR) | (1 << X_FORWARDED_PROTO) |
  (1 << X_FORWARDED_HOST);
const RESPONSE_DROP = HOP_IDS | (1 << VIA);
// Never removed because a Connection header names them: framing and routing depend on them.
const PROTECTED = new Set([HOST, CONTENT_LENGTH, TRANSFER_ENCODING].map(knownName));
// The fixed pieces of forwarded heads, encoded once.
const REQUEST_VERSION = octets("HTTP/1.1\r\n");
const RESPONSE_VERSION = octets("HTTP/1.1 ");
const CONTENT_LENGTH_IS = octets("content-length: ");
const CHUNKED = octets("transfer-encoding: chunked\r\n");
const CRLF = octets("\r\n");
const XFF_IS = octets("x-forwarded-for: ");
const XFP_HTTP = octets("\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
const XFP_HTTPS = octets("\r\nx-forwarded-proto: https\r\nx-forwarded-host: ");
const VIA_IS = octets("via: ");
const VIA_11 = octets("1.1 unload\r\n\r\n");
const VIA_10 = octets("1.0 unload\r\n\r\n");
const VIA_2 = octets("2 unload\r\n\r\n");

/** What the balancer knows about a request besides its head. */
export interface ForwardInfo {
  /** Client IP address. */
  clientIp: string;
  /** `http` or `https`: how the client reached the balancer. */
  proto: string;
  /** Host the request was addressed to (for `X-Forwarded-Host`). */
  host: string;
  /** Request body framing as validated at the edge. */
  framing: Framing;
  /** Keep `Upgrade` and `Connection: upgrade` (a WebSocket handshake). */
  upgrade: string | undefined;
  /** The client spoke HTTP/2 (`Via: 2 unload`). @default {false} */
  http2?: boolean;
}

/** Where a head is written: a `BufWriter` on the hot path, a {@linkcode TextSink} elsewhere. */
export interface HeadSink {
  /** Appends `s`. */
  writeString(s: string): void;
  /** Appends the bytes `buf[start..end)`. */
  writeBytes(buf: Uint8Array, start: number, end: number): void;
}

/**
 * A {@linkcode HeadSink} that collects a string.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { TextSink } from "./forwarded.ts";
 * const sink = new TextSink();
 * sink.writeString("a");
 * sink.writeBytes(new Uint8Array([0x78, 0x62, 0x63]), 1, 3);
 * assert(sink.text === "abc");
 * ```
 */
export class TextSink implements HeadSink {
  /** Everything written. */
  text = "";
  /** Appends `s`. */
  writeString(s: string): void {
    this.text += s;
  }
  /** Appends the bytes `buf[start..end)` as Latin-1. */
  writeBytes(buf: Uint8Array, start: number, end: number): void {
    this.text += latin1(buf, start, end);
  }
}

/**
 * Writes the request head sent to a backend: HTTP/1.1, keep-alive, hop-by-hop
 * fields removed, one normalised framing field, forwarding fields added; other
 * field lines are copied as received.
 */
export function writeRequestHead(out: HeadSink, head: RequestHead, info: ForwardInfo): void {
  out.writeBytes(head.buf, head.start, head.versionAt); // "method SP target SP"
  put(out, REQUEST_VERSION);
  const named = connectionNamed(head);
  copyFields(out, head, REQUEST_DROP, named, info.host);
  if (!head.has(HOST)) out.writeString(`host: ${info.host}\r\n`);
  if (info.framing.kind === "length") writeLength(out, info.framing.length);
  else if (info.framing.kind === "chunked") put(out, CHUNKED);
  if (info.upgrade !== undefined) {
    out.writeString("connection: upgrade\r\nupgrade: ");
    out.writeString(info.upgrade);
    put(out, CRLF);
  }
  put(out, XFF_IS);
  writeList(out, head, X_FORWARDED_FOR, named);
  out.writeString(info.clientIp);
  put(out, info.proto === "https" ? XFP_HTTPS : XFP_HTTP);
  out.writeString(info.host);
  put(out, CRLF);
  if (info.http2) {
    put(out, VIA_IS);
    writeList(out, head, VIA, named);
    put(out, VIA_2);
  } else writeVia(out, head, named);
}

/**
 * {@linkcode writeRequestHead} into a string.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { forwardRequestHead } from "./forwarded.ts";
 * const h = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
 * const out = forwardRequestHead(h, {
 *   clientIp: "10.0.0.1", proto: "http", host: "a", framing: { kind: "none", length: 0 },
 *   upgrade: undefined,
 * });
 * assert(out.includes("x-forwarded-for: 10.0.0.1\r\n") && !out.includes("close"));
 * ```
 */
export function forwardRequestHead(head: RequestHead, info: ForwardInfo): string {
  const sink = new TextSink();
  writeRequestHead(sink, head, info);
  return sink.text;
}

/** Options for {@linkcode forwardResponseHead}. */
export interface ResponseInfo {
  /** Body framing sent to the client (chunked relayed as is, or dechunked). */
  framing: Framing;
  /** Send `Transfer-Encoding: chunked` (false when dechunking for HTTP/1.0). */
  chunked: boolean;
  /** Close the client connection after this response. */
  close: boolean;
  /** The client speaks HTTP/1.0 (needs an explicit keep-alive). */
  clientMinor: 0 | 1;
  /** Keep `Upgrade`/`Connection: upgrade` (a 101 answer). */
  upgrade: boolean;
}

/** Writes the response head sent to the client; other field lines are copied as received. */
export function writeResponseHead(out: HeadSink, head: ResponseHead, info: ResponseInfo): void {
  put(out, RESPONSE_VERSION);
  out.writeBytes(head.buf, head.start + 9, head.statusEnd); // status code and reason
  out.writeString(head.statusEnd - head.start === 12 ? " \r\n" : "\r\n");
  const named = connectionNamed(head);
  copyFields(out, head, RESPONSE_DROP, named);
  if (info.framing.kind === "length") writeLength(out, info.framing.length);
  else if (info.chunked) put(out, CHUNKED);
  else if (info.framing.kind === "close" && head.has(TRANSFER_ENCODING)) {
    // e.g. "gzip" without chunked: delimited by close, but the coding still applies
    out.writeString(`transfer-encoding: ${head.valueOf(TRANSFER_ENCODING)}\r\n`);
  } else if (head.status >= 200 && head.status !== 204 && head.has(CONTENT_LENGTH)) {
    // HEAD or 304: keep the advertised length of the representation.
    out.writeString(`content-length: ${head.valueOf(CONTENT_LENGTH)}\r\n`);
  }
  if (info.upgrade) out.writeString(`connection: upgrade\r\nupgrade: ${upgradeOf(head)}\r\n`);
  else if (info.close) out.writeString("connection: close\r\n");
  else if (info.clientMinor === 0) out.writeString("connection: keep-alive\r\n");
  writeVia(out, head, named);
}

/**
 * {@linkcode writeResponseHead} into a string.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseResponseHead } from "../http1/parse.ts";
 * import { forwardResponseHead } from "./forwarded.ts";
 * const h = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: x\r\n\r\n");
 * const out = forwardResponseHead(h, {
 *   framing: { kind: "length", length: 2 }, chunked: false, close: false, clientMinor: 1,
 *   upgrade: false,
 * });
 * assert(out.includes("content-length: 2\r\n") && !out.includes("Keep-Alive"));
 * ```
 */
export function forwardResponseHead(head: ResponseHead, info: ResponseInfo): string {
  const sink = new TextSink();
  writeResponseHead(sink, head, info);
  return sink.text;
}

/**
 * The response fields sent to an HTTP/2 client for an HTTP/1.1 response head:
 * lowercase names, hop-by-hop fields and those named by Connection left out,
 * `content-length` kept when the length is known, and this hop added to `via`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseResponseHead } from "../http1/parse.ts";
 * import { h2ResponseFields } from "./forwarded.ts";
 * const h = parseResponseHead(
 *   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: x-a\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n",
 * );
 * assertEquals(h2ResponseFields(h, { kind: "length", length: 2 }), [
 *   "content-type", "text/plain", "content-length", "2", "via", "1.1 unload",
 * ]);
 * ```
 *
 * @param head The backend's response head.
 * @param framing How its body is delimited.
 * @returns Flat `name, value, ...` list.
 */
export function h2ResponseFields(head: ResponseHead, framing: Framing): string[] {
  const named = connectionNamed(head);
  const out: string[] = [];
  let via = "";
  for (let i = 0; i < head.count; i++) {
    const id = head.id(i);
    if (id === VIA) {
      if (!isNamed(head, i, named)) via += head.value(i) + ", ";
      continue;
    }
    if ((RESPONSE_DROP & (1 << id)) !== 0 || isNamed(head, i, named)) continue;
    out.push(head.name(i), head.value(i));
  }
  if (framing.kind === "length") out.push("content-length", String(framing.length));
  else if (head.status >= 200 && head.status !== 204 && head.has(CONTENT_LENGTH)) {
    out.push("content-length", head.valueOf(CONTENT_LENGTH)!); // HEAD or 304
  }
  out.push("via", `${via}${head.minor === 1 ? "1.1" : "1.0"} unload`);
  return out;
}

/**
 * The regular fields of a request sent to an HTTP/2 backend: the client's
 * fields less hop-by-hop ones, those named by Connection and Host (it becomes
 * `:authority`); `te: trailers` kept when the client offered trailers (gRPC);
 * `content-length` when known; the forwarding fields added as for HTTP/1.1.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { h2RequestFields } from "./forwarded.ts";
 * const h = parseRequestHead(
 *   "POST /svc/Echo HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n",
 * );
 * assertEquals(
 *   h2RequestFields(h, {
 *     clientIp: "10.0.0.1", proto: "https", host: "a", framing: { kind: "length", length: 5 },
 *     upgrade: undefined, http2: true,
 *   }),
 *   [
 *     "content-type", "application/grpc", "te", "trailers", "content-length", "5",
 *     "x-forwarded-for", "10.0.0.1", "x-forwarded-proto", "https", "x-forwarded-host", "a",
 *     "via", "2 unload",
 *   ],
 * );
 * ```
 *
 * @param head The request head (for an HTTP/2 client, the one its stream was rendered as).
 * @param info What the balancer knows besides the head.
 * @returns Flat `name, value, ...` list, lowercase names.
 */
export function h2RequestFields(head: RequestHead, info: ForwardInfo): string[] {
  const named = connectionNamed(head);
  const out: string[] = [];
  let xff = "";
  let via = "";
  for (let i = 0; i < head.count; i++) {
    const id = head.id(i);
    if (isNamed(head, i, named)) continue;
    if (id === X_FORWARDED_FOR) xff += head.value(i) + ", ";
    else if (id === VIA) via += head.value(i) + ", ";
    else if (id !== HOST && (REQUEST_DROP & (1 << id)) === 0) out.push(head.name(i), head.value(i));
  }
  if (head.tokens(TE).includes("trailers")) out.push("te", "trailers");
  if (info.framing.kind === "length") out.push("content-length", String(info.framing.length));
  out.push("x-forwarded-for", xff + info.clientIp);
  out.push("x-forwarded-proto", info.proto === "https" ? "https" : "http");
  out.push("x-forwarded-host", info.host);
  out.push("via", `${via}${info.http2 ? "2" : head.minor === 1 ? "1.1" : "1.0"} unload`);
  return out;
}

/** What {@linkcode writeFieldsResponseHead} needs besides the fields. */
export interface FieldsResponseInfo {
  /** The body's length, -1 when unknown (then chunked, or close-delimited for HTTP/1.0). */
  length: number;
  /** No body follows (HEAD, 204, 304, a trailers-only answer). */
  bodyless: boolean;
  /** Close the client connection after this response. */
  close: boolean;
  /** The client speaks HTTP/1.0. */
  clientMinor: 0 | 1;
}

/**
 * Writes an HTTP/1.1 response head for a response an HTTP/2 backend sent as
 * fields: content-length kept when known, else chunked (HTTP/1.1 clients; the
 * caller frames the body and sends trailers as chunked trailers).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { TextSink, writeFieldsResponseHead } from "./forwarded.ts";
 * const out = new TextSink();
 * writeFieldsResponseHead(out, 200, ["content-type", "application/grpc"], {
 *   length: -1, bodyless: false, close: false, clientMinor: 1,
 * });
 * assertEquals(
 *   out.text,
 *   "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\nvia: 2 unload\r\n\r\n",
 * );
 * ```
 *
 * @param out Where the head goes.
 * @param status The response status.
 * @param fields The backend's regular response fields (lowercase names).
 * @param info Framing and connection handling.
 */
export function writeFieldsResponseHead(
  out: HeadSink,
  status: number,
  fields: readonly string[],
  info: FieldsResponseInfo,
): void {
  out.writeString(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n`);
  let via = "";
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    if (name === "via") via += fields[i + 1] + ", ";
    else if (name !== "content-length") out.writeString(`${name}: ${fields[i + 1]}\r\n`);
  }
  if (info.length >= 0) writeLength(out, info.length);
  else if (!info.bodyless && info.clientMinor === 1) put(out, CHUNKED);
  if (info.close) out.writeString("connection: close\r\n");
  else if (info.clientMinor === 0) out.writeString("connection: keep-alive\r\n");
  out.writeString(`via: ${via}2 unload\r\n\r\n`);
}

/**
 * Copies the field lines of `head` as received, in runs of consecutive kept lines,
 * leaving out those whose id is in `drop` and those `named` by Connection. With
 * `host`, a Host field whose value differs is sent with that value instead (the
 * routed host: an absolute-form target's authority overrides Host, RFC 9112 §3.2.2).
 */
function copyFields(
  out: HeadSink,
  head: Fields,
  drop: number,
  named: Set<string> | undefined,
  host?: string,
): void {
  let run = -1; // start of the field lines being copied as one piece
  for (let i = 0; i < head.count; i++) {
    const id = head.id(i);
    const rewrite = host !== undefined && id === HOST && !head.valueIs(i, host);
    if (!rewrite && (drop & (1 << id)) === 0 && !isNamed(head, i, named)) {
      if (run === -1) run = head.lineStart(i);
      continue;
    }
    if (run !== -1) out.writeBytes(head.buf, run, head.lineStart(i));
    run = -1;
    if (rewrite) {
      out.writeBytes(head.buf, head.lineStart(i), head.valueStart(i)); // "Host:" as spelled
      out.writeString(host);
      put(out, CRLF);
    }
  }
  if (run !== -1) out.writeBytes(head.buf, run, head.lineEnd(head.count - 1) + 2);
}

// "content-length: N" and its CRLF, in pieces: no string is built for it.
function writeLength(out: HeadSink, length: number): void {
  put(out, CONTENT_LENGTH_IS);
  out.writeString(String(length));
  put(out, CRLF);
}

function isNamed(head: Fields, i: number, named: Set<string> | undefined): boolean {
  return named !== undefined && named.has(head.name(i));
}

// The Via field and the empty line: the hops so far, then this one (RFC 9110 §7.6.3).
function writeVia(
  out: HeadSink,
  head: RequestHead | ResponseHead,
  named: Set<string> | undefined,
): void {
  put(out, VIA_IS);
  writeList(out, head, VIA, named);
  put(out, head.minor === 1 ? VIA_11 : VIA_10);
}

// The values of the fields with `id` that Connection does not name, each followed by
// ", ": the list a forwarding field (X-Forwarded-For, Via) continues.
function writeList(out: HeadSink, head: Fields, id: number, named: Set<string> | undefined): void {
  if (!head.has(id)) return;
  for (let i = 0; i < head.count; i++) {
    if (head.id(i) !== id || isNamed(head, i, named)) continue;
    out.writeBytes(head.buf, head.valueStart(i), head.valueEnd(i));
    out.writeString(", ");
  }
}

function put(out: HeadSink, bytes: Uint8Array): void {
  out.writeBytes(bytes, 0, bytes.length);
}

function upgradeOf(head: Fields): string {
  return head.valueOf(UPGRADE) ?? "websocket";
}

function connectionNamed(head: Fields): Set<string> | undefined {
  const tokens = head.connection;
  if (tokens.length === 0) return undefined;
  let set: Set<string> | undefined;
  for (const t of tokens) {
    if (PROTECTED.has(t) || HOP_BY_HOP.has(t) || t === "close") continue; // dropped anyway
    (set ??= new Set()).add(t);
  }
  return set;
}
