/**
 * Header rewriting on the way through: hop-by-hop fields removed (RFC 9110 §7.6.1),
 * `X-Forwarded-*` and `Via` added.
 *
 * @module
 */
import {
  connectionTokens,
  type Fields,
  type RequestHead,
  type ResponseHead,
} from "./http1/head.ts";
import type { Framing } from "./http1/body.ts";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "upgrade",
  "transfer-encoding",
  "content-length",
]);
// Never removed because a Connection header names them: framing and routing depend on them.
const PROTECTED = new Set(["host", "content-length", "transfer-encoding"]);
const VIA_11 = "1.1 unload";
const VIA_10 = "1.0 unload";
const XFP_HTTP = "\r\nx-forwarded-proto: http\r\nx-forwarded-host: ";
const XFP_HTTPS = "\r\nx-forwarded-proto: https\r\nx-forwarded-host: ";

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
}

/** Where a head is written: a `BufWriter` on the hot path, a {@linkcode TextSink} elsewhere. */
export interface HeadSink {
  /** Appends `s`. */
  writeString(s: string): void;
  /** Appends `text[start..end)`. */
  writeText(text: string, start: number, end: number): void;
}

/**
 * A {@linkcode HeadSink} that collects a string.
 *
 * @example
 * ```ts
 * import { TextSink } from "./headers.ts";
 * const sink = new TextSink();
 * sink.writeString("a");
 * sink.writeText("xbcx", 1, 3);
 * console.assert(sink.text === "abc");
 * ```
 */
export class TextSink implements HeadSink {
  /** Everything written. */
  text = "";
  /** Appends `s`. */
  writeString(s: string): void {
    this.text += s;
  }
  /** Appends `text[start..end)`. */
  writeText(text: string, start: number, end: number): void {
    this.text += text.slice(start, end);
  }
}

/**
 * Writes the request head sent to a backend: HTTP/1.1, keep-alive, hop-by-hop
 * fields removed, one normalised framing field, forwarding fields added; other
 * field lines are copied as received.
 */
export function writeRequestHead(out: HeadSink, head: RequestHead, info: ForwardInfo): void {
  const named = connectionNamed(head);
  out.writeString(`${head.method} ${head.target} HTTP/1.1\r\n`);
  let xff = "";
  let hasHost = false;
  for (let i = 0; i < head.names.length; i++) {
    const name = head.names[i]!;
    if (name === "via" || isHopByHop(name, named)) continue;
    if (name === "x-forwarded-for") {
      xff += `${head.values[i]}, `;
      continue;
    }
    if (name === "x-forwarded-proto" || name === "x-forwarded-host") continue;
    if (name === "host") {
      // the routed host: an absolute-form target's authority overrides Host (RFC 9112 §3.2.2)
      hasHost = true;
      if (head.values[i] !== info.host) {
        out.writeString(`${head.rawNames[i]}: ${info.host}\r\n`);
        continue;
      }
    }
    copyLine(out, head, i);
  }
  if (!hasHost) out.writeString(`host: ${info.host}\r\n`);
  // the added fields go out piece by piece: no string is built for them
  if (info.framing.kind === "length") {
    out.writeString("content-length: ");
    out.writeString(String(info.framing.length));
    out.writeString("\r\n");
  } else if (info.framing.kind === "chunked") out.writeString("transfer-encoding: chunked\r\n");
  if (info.upgrade !== undefined) {
    out.writeString("connection: upgrade\r\nupgrade: ");
    out.writeString(info.upgrade);
    out.writeString("\r\n");
  }
  out.writeString("x-forwarded-for: ");
  if (xff !== "") out.writeString(xff);
  out.writeString(info.clientIp);
  out.writeString(info.proto === "https" ? XFP_HTTPS : XFP_HTTP);
  out.writeString(info.host);
  out.writeString("\r\nvia: ");
  writeVia(out, head);
  out.writeString("\r\n\r\n");
}

/**
 * {@linkcode writeRequestHead} into a string.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./http1/head.ts";
 * import { forwardRequestHead } from "./headers.ts";
 * const h = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
 * const out = forwardRequestHead(h, {
 *   clientIp: "10.0.0.1", proto: "http", host: "a", framing: { kind: "none", length: 0 },
 *   upgrade: undefined,
 * });
 * console.assert(out.includes("x-forwarded-for: 10.0.0.1\r\n") && !out.includes("close"));
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
  const named = connectionNamed(head);
  out.writeString(`HTTP/1.1 ${head.status} ${head.reason}\r\n`);
  for (let i = 0; i < head.names.length; i++) {
    const name = head.names[i]!;
    if (name !== "via" && !isHopByHop(name, named)) copyLine(out, head, i);
  }
  let tail = "";
  if (info.framing.kind === "length") tail = `content-length: ${info.framing.length}\r\n`;
  else if (info.chunked) tail = "transfer-encoding: chunked\r\n";
  else if (info.framing.kind === "close" && head.names.includes("transfer-encoding")) {
    // e.g. "gzip" without chunked: delimited by close, but the coding still applies
    tail = `transfer-encoding: ${head.values[head.names.indexOf("transfer-encoding")]}\r\n`;
  } else if (head.status >= 200 && head.status !== 204 && head.names.includes("content-length")) {
    // HEAD or 304: keep the advertised length of the representation.
    tail = `content-length: ${head.values[head.names.indexOf("content-length")]}\r\n`;
  }
  if (info.upgrade) tail += `connection: upgrade\r\nupgrade: ${upgradeOf(head)}\r\n`;
  else if (info.close) tail += "connection: close\r\n";
  else if (info.clientMinor === 0) tail += "connection: keep-alive\r\n";
  out.writeString(tail);
  out.writeString("via: ");
  writeVia(out, head);
  out.writeString("\r\n\r\n");
}

/**
 * {@linkcode writeResponseHead} into a string.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./http1/head.ts";
 * import { forwardResponseHead } from "./headers.ts";
 * const h = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: x\r\n\r\n");
 * const out = forwardResponseHead(h, {
 *   framing: { kind: "length", length: 2 }, chunked: false, close: false, clientMinor: 1,
 *   upgrade: false,
 * });
 * console.assert(out.includes("content-length: 2\r\n") && !out.includes("Keep-Alive"));
 * ```
 */
export function forwardResponseHead(head: ResponseHead, info: ResponseInfo): string {
  const sink = new TextSink();
  writeResponseHead(sink, head, info);
  return sink.text;
}

function isHopByHop(name: string, named: Set<string> | undefined): boolean {
  return HOP_BY_HOP.has(name) || (named !== undefined && named.has(name));
}

// The Via value to send: the hops so far, then this one (RFC 9110 §7.6.3).
function writeVia(out: HeadSink, head: RequestHead | ResponseHead): void {
  if (head.names.includes("via")) {
    for (let i = 0; i < head.names.length; i++) {
      if (head.names[i] !== "via") continue;
      out.writeString(head.values[i]!);
      out.writeString(", ");
    }
  }
  out.writeString(head.minor === 1 ? VIA_11 : VIA_10);
}

// Field line i as received (its text and CRLF), or rebuilt when the head has no text.
function copyLine(out: HeadSink, head: Fields, i: number): void {
  const lines = head.lines;
  if (head.text !== undefined && lines !== undefined && lines.length > 2 * i) {
    out.writeText(head.text, lines[2 * i]!, lines[2 * i + 1]! + 2);
  } else out.writeString(`${head.rawNames[i]}: ${head.values[i]}\r\n`);
}

function upgradeOf(head: Fields): string {
  const i = head.names.indexOf("upgrade");
  return i === -1 ? "websocket" : head.values[i]!;
}

function connectionNamed(head: Fields): Set<string> | undefined {
  let set: Set<string> | undefined;
  for (const t of connectionTokens(head)) {
    if (PROTECTED.has(t) || HOP_BY_HOP.has(t) || t === "close") continue; // dropped anyway
    (set ??= new Set()).add(t);
  }
  return set;
}
