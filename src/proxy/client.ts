/**
 * The client side of an exchange: what the data path needs of a client
 * connection, what the edge learned from a request head, and the responses the
 * balancer writes itself.
 *
 * @module
 */
import type { ExchangeRecord } from "./context.ts";
import type { Timed } from "../timer/watchdog.ts";
import type { Framing } from "../http1/body.ts";
import type { HeadLimits } from "../http1/head.ts";
import type { RequestHead, ResponseHead } from "../http1/parse.ts";
import type { FieldsResponseInfo, ResponseInfo } from "./forwarded.ts";
import type { BufReader, BufWriter } from "../http1/io.ts";
import type { SimpleResponseOptions } from "../http1/status.ts";
import type { PrivatePools } from "../upstream/private_pools.ts";

/** What a client's cancel stops (the exchange in progress). */
export interface Cancellable {
  /** Stops everything the request started; `reason` is why. */
  cancel(reason: unknown): void;
}

/** The client end of an exchange. */
export interface ClientSide {
  /** Buffered reads from the client connection. */
  reader: BufReader;
  /** Buffered writes to the client connection. */
  writer: BufWriter;
  /** Head limits in force on this connection (used for responses too). */
  readonly headLimits: HeadLimits;
  /** Closes the client connection (unblocks anything waiting on it). */
  close(): void;
  /**
   * Hands the connection's timeout to `t` (the exchange in progress) until called
   * with undefined: one watchdog entry per connection, not one per request.
   */
  watch(t: Timed | undefined): void;
  /**
   * True when the client speaks HTTP/2, whose frames delimit bodies: a chunked
   * response body reaches it as plain data.
   */
  readonly http2: boolean;
  /** Stages the head of a backend's response (HTTP/1.1 bytes, or HTTP/2 HEADERS). */
  sendHead(head: ResponseHead, info: ResponseInfo): void;
  /**
   * Stages the head of an HTTP/2 backend's response, given as fields (HTTP/1.1
   * bytes with `info`'s framing, or HTTP/2 HEADERS).
   */
  sendFields(status: number, fields: readonly string[], info: FieldsResponseInfo): void;
  /**
   * Sets who is told when the client cancels the request (an HTTP/2
   * RST_STREAM), or clears it; absent for HTTP/1.x, whose clients cannot.
   */
  cancelWith?(target: Cancellable | undefined): void;
  /** Stages a whole response made by the balancer itself. */
  sendSimple(status: number, message: string, options: AnswerOptions): void;
  /**
   * True for a gRPC call (an HTTP/2 request with `content-type: application/grpc*`):
   * the balancer's own answers and failures reach it as gRPC statuses.
   */
  readonly grpc?: boolean;
  /** A gRPC call's `grpc-timeout` value, when it has one. */
  readonly grpcTimeout?: string | undefined;
  /**
   * PINGs received so far on an HTTP/2 client's connection: a client's keepalive
   * counts as activity for its idle streams.
   */
  readonly pings?: number;
  /**
   * Ends the response once its body was flushed (HTTP/2: END_STREAM, on
   * `trailers` when given); undefined when there is nothing to do (HTTP/1.1
   * framing already ended it, chunked trailers included).
   */
  finish(trailers?: readonly string[]): Promise<void> | undefined;
  /**
   * The backend connections private to this client connection (routes with
   * `proxy_protocol`), made on first use and closed when the connection ends.
   */
  privatePools?(): PrivatePools;
}

/**
 * Where a client connection came from and what it connected to: the TCP peer
 * and the listener's address, or what a PROXY header named instead.
 */
export interface ClientOrigin {
  /** The client's IP address. */
  readonly ip: string;
  /** The client's port. */
  readonly port: number;
  /** The address the client connected to. */
  readonly dest: string;
  /** The port the client connected to. */
  readonly destPort: number;
}

/**
 * The origin of `conn` as its sockets see it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { originOf } from "./client.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const c = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
 * const s = await l.accept();
 * assertEquals(originOf(s), {
 *   ip: "127.0.0.1", port: (c.localAddr as Deno.NetAddr).port, dest: "127.0.0.1", destPort: l.addr.port,
 * });
 * c.close();
 * s.close();
 * l.close();
 * ```
 */
export function originOf(conn: Deno.Conn): ClientOrigin {
  const peer = conn.remoteAddr as Deno.NetAddr;
  const local = conn.localAddr as Deno.NetAddr;
  return {
    ip: peer.hostname ?? "",
    port: peer.port ?? 0,
    dest: local.hostname ?? "",
    destPort: local.port ?? 0,
  };
}

/** How the balancer answers by itself: a plain-text page, or a gRPC status. */
export interface AnswerOptions extends SimpleResponseOptions {
  /** The gRPC status a gRPC client gets. @default {what gRPC's HTTP mapping gives `status`} */
  grpcStatus?: number;
  /**
   * The `grpc-message` a gRPC client gets (about its request, never the
   * balancer's inside). @default {the text an HTTP client would get}
   */
  grpcMessage?: string;
}

/** What the edge learned from the request head. */
export interface Request {
  /** The parsed request head. */
  head: RequestHead;
  /** How the request body is delimited. */
  framing: Framing;
  /** The Host header, or the authority of an absolute-form target (may carry a port). */
  host: string;
  /** The path routed on ("/" for an asterisk-form target). */
  path: string;
  /** True when the client's HTTP version and `Connection` tokens allow another request. */
  keepAlive: boolean;
  /** The protocol asked for in `Upgrade`, when the client asked to switch. */
  upgrade: string | undefined;
}

/**
 * Flushes what is staged for the client and ends the response. The end is asked
 * for while the last bytes are pending, so that for an HTTP/2 client they leave
 * in one DATA frame carrying END_STREAM (with `trailers`, on HEADERS after it).
 *
 * @param client The client side.
 * @param trailers Trailer fields for an HTTP/2 client (`name, value, ...`).
 * @returns Settles once both are done; rejects when either fails.
 */
export function endResponse(client: ClientSide, trailers?: readonly string[]): Promise<unknown> {
  const flushed = client.writer.flush();
  const ended = client.finish(trailers);
  return ended === undefined ? flushed : Promise.all([flushed, ended]);
}

/**
 * Writes a response made by the balancer itself.
 *
 * @returns true when the client connection can carry another request.
 */
export async function answer(
  client: ClientSide,
  rec: ExchangeRecord,
  status: number,
  message: string,
  options: AnswerOptions & { close: boolean },
): Promise<boolean> {
  rec.status = status;
  rec.error = message;
  const before = client.writer.written;
  client.sendSimple(status, message, options);
  try {
    await endResponse(client);
  } catch {
    return false;
  }
  rec.bytesOut += client.writer.written - before;
  return !options.close;
}
