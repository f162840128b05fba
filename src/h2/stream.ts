/**
 * One HTTP/2 request stream on the server side: the request's head and body as
 * received, and the response sent back, under flow control (RFC 9113 §5, §8).
 *
 * @module
 */
import { appendH2Fields, type RequestPseudo } from "./request_fields.ts";
import { StreamBase, type StreamHost } from "./_stream_base.ts";

/** A validated request stream, as handed to `H2ServerOptions.onStream`. */
export interface H2Stream {
  /** Stream id (odd). */
  readonly id: number;
  /** `:method`. */
  readonly method: string;
  /** `:scheme`. */
  readonly scheme: string;
  /** `:authority` ("" when absent). */
  readonly authority: string;
  /** `:path`. */
  readonly path: string;
  /** Regular fields, flat `name, value, ...` (lowercase names; cookie crumbs stay separate). */
  readonly fields: readonly string[];
  /** Value of content-length, -1 when absent. */
  readonly contentLength: number;
  /** False when the HEADERS frame carried END_STREAM. */
  readonly hasBody: boolean;
  /** Aborted on RST_STREAM from the client, connection loss, or a timeout. */
  readonly signal: AbortSignal;
  /** Told once, when the stream fails as `signal` aborts (no event, no listener list). */
  failureListener: { cancel(reason: unknown): void } | undefined;
  /**
   * ms a wait on the client (a body that stopped, a zero window) may last before
   * the stream is reset; 0 = none (whoever owns the stream times it). Starts as
   * the connection's `bodyIdleTimeout`.
   */
  idleTimeout: number;
  /** Trailers, once {@linkcode H2Stream.read} has returned null (undefined if none). */
  readonly trailers: readonly string[] | undefined;
  /**
   * The next DATA payload (a copy the caller owns), or null at the end of the
   * body; consuming it returns receive window to the peer.
   *
   * @throws {Error} when the stream was reset, timed out or the body is malformed.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Sends response HEADERS: a 1xx interim response, or the final one
   * (`endStream` for a response without body). Names are lowercased and
   * connection-specific fields are left out.
   *
   * @throws {Error} when a final response was already sent or the stream is closed.
   */
  respond(status: number, fields: readonly string[], options?: { endStream?: boolean }): void;
  /**
   * Sends `data[start..end)` as DATA frames within the send windows; resolves
   * at once when the bytes were copied (a small write the window allows), else
   * once every byte has been handed to the connection; then `data` may be
   * reused. One write at a time.
   */
  write(data: Uint8Array, start?: number, end?: number): Promise<void>;
  /**
   * Ends the response: END_STREAM on the last DATA frame, or on trailing
   * HEADERS. Resolves at once; a later failure is the stream's error.
   */
  end(trailers?: readonly string[]): Promise<void>;
  /** Resets the stream with `code` (RST_STREAM). */
  reset(code: number): void;
}

/**
 * The server side of one stream; the connection drives its receive and send
 * state, the application uses the {@linkcode H2Stream} surface.
 *
 * @example
 * ```ts ignore
 * // made by H2ServerConnection only
 * server.onStream = (s) => { s.respond(200, ["content-type", "text/plain"]); s.end(); };
 * ```
 */
export class ServerStream extends StreamBase implements H2Stream {
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly fields: readonly string[];
  readonly hasBody: boolean;
  /** A final (non-1xx) response was sent. */
  finalSent = false;
  /** When the stream was opened (ms, the connection's clock). */
  openedAt = 0;

  readonly #host: StreamHost;

  /** Makes a stream from a validated request (`fields` are the regular fields). */
  constructor(
    host: StreamHost,
    init: {
      id: number;
      pseudo: RequestPseudo;
      fields: readonly string[];
      endStream: boolean;
      recvWindow: number;
      sendWindow: number;
    },
  ) {
    const p = init.pseudo;
    super(host, {
      id: init.id,
      side: "server",
      recvWindow: init.recvWindow,
      sendWindow: init.sendWindow,
      remoteClosed: init.endStream,
      localClosed: false,
      contentLength: p.contentLength,
    });
    this.#host = host;
    this.method = p.method;
    this.scheme = p.scheme;
    this.authority = p.authority;
    this.path = p.path;
    this.fields = init.fields;
    this.hasBody = !init.endStream;
  }

  respond(status: number, fields: readonly string[], options?: { endStream?: boolean }): void {
    const error = this.error;
    if (error !== undefined) throw error;
    if (this.finalSent || this.localClosed) {
      throw new Error(`Stream ${this.id} already has a response`);
    }
    const final = status >= 200;
    const endStream = final && options?.endStream === true;
    const list = appendH2Fields([":status", String(status)], fields);
    if (final) this.finalSent = true;
    if (endStream) this.localClosed = true;
    this.#host.sendHeaders(this, list, { endStream });
    if (endStream) this.#host.localEnded(this);
  }

  protected override notReady(call: "data" | "end"): string {
    return this.finalSent ? "" : `A response must be sent before ${call}`;
  }

  protected override trailerList(trailers: readonly string[]): readonly string[] {
    return appendH2Fields([], trailers);
  }
}
