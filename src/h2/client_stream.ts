/**
 * One HTTP/2 stream on the client side: the request sent (head, body,
 * trailers) and the response received, under flow control (RFC 9113 §5, §8).
 *
 * @module
 */
import { appendH2Fields } from "./request_fields.ts";
import { StreamBase, type StreamHost } from "./_stream_base.ts";

/** A response head: the status and the regular fields (flat `name, value, ...`). */
export interface H2Response {
  /** `:status` (200..599). */
  status: number;
  /** Regular fields, lowercase names, in the order received. */
  fields: string[];
  /** True when the HEADERS frame carried END_STREAM (no body; gRPC's trailers-only response). */
  endStream: boolean;
}

/**
 * Thrown when the server refused a stream, or a connection could not take it:
 * the request was not processed and is safe to retry on another connection
 * (RST_STREAM REFUSED_STREAM, or a stream above the last id of a GOAWAY).
 */
export class RefusedError extends Error {
  /** Makes the error; `message` says who refused. */
  constructor(message: string) {
    super(message);
    this.name = "RefusedError";
  }
}

/** A request stream as the application sees it. */
export interface H2ClientStream {
  /** Stream id (odd). */
  readonly id: number;
  /** Aborted when the stream fails (reset, connection loss, timeout). */
  readonly signal: AbortSignal;
  /** Trailers, once {@linkcode H2ClientStream.read} returned null (undefined if none). */
  readonly trailers: readonly string[] | undefined;
  /**
   * The final response head (1xx interim responses are skipped).
   *
   * @throws {RefusedError} when the server refused the stream (safe to retry).
   * @throws {Error} when the stream or the connection failed.
   */
  response(): Promise<H2Response>;
  /**
   * The next DATA payload of the response (a copy the caller owns), or null at
   * its end; consuming it returns receive window to the server.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Sends `data[start..end)` as request DATA within the send windows; resolves
   * at once when the bytes were copied (a small write the window allows), else
   * once every byte was handed to the connection; then `data` may be reused.
   * One write at a time.
   */
  write(data: Uint8Array, start?: number, end?: number): Promise<void>;
  /**
   * Ends the request: END_STREAM on the last DATA frame, or on trailing
   * HEADERS. Resolves at once; a later failure is the stream's error.
   */
  end(trailers?: readonly string[]): Promise<void>;
  /** Resets the stream with `code` (RST_STREAM), e.g. CANCEL when the client went away. */
  reset(code: number): void;
}

function ignore(): void {}

/**
 * The client side of one stream; the connection drives its state, the
 * application uses the {@linkcode H2ClientStream} surface.
 *
 * @example
 * ```ts ignore
 * // made by H2ClientConnection.request only
 * const s = h2.request({ method: "GET", scheme: "http", authority: "a", path: "/", fields: [], endStream: true });
 * const { status } = await s.response();
 * ```
 */
export class ClientStream extends StreamBase implements H2ClientStream {
  /** The final response head arrived. */
  headReceived = false;
  /** The request was HEAD (its response has no body whatever content-length says). */
  readonly headRequest: boolean;
  /** Called once when the stream closes (unhooks the caller's abort signal). */
  detach: () => void = ignore;

  readonly #head: Promise<H2Response>;
  #headDone!: { resolve(r: H2Response): void; reject(e: unknown): void };

  /** Makes a stream whose HEADERS are being sent (`endStream`: they end the request). */
  constructor(
    host: StreamHost,
    init: {
      id: number;
      endStream: boolean;
      headRequest: boolean;
      recvWindow: number;
      sendWindow: number;
    },
  ) {
    super(host, {
      id: init.id,
      side: "client",
      recvWindow: init.recvWindow,
      sendWindow: init.sendWindow,
      remoteClosed: false,
      localClosed: init.endStream,
      contentLength: -1,
    });
    this.headRequest = init.headRequest;
    this.#head = new Promise((resolve, reject) => this.#headDone = { resolve, reject });
    this.#head.catch(ignore); // the caller may never ask for it
    const t = host.bodyIdleTimeout;
    if (t > 0) this.readDeadline = host.now + t; // waiting for the response head
  }

  response(): Promise<H2Response> {
    return this.#head;
  }

  /** The final head arrived. */
  receiveHead(head: H2Response): void {
    this.headReceived = true;
    if (head.endStream) this.remoteClosed = true;
    this.readDeadline = 0; // armed again by read()
    this.#headDone.resolve(head);
    if (head.endStream) this.wakeEnd();
  }

  protected override failed(error: Error): void {
    if (!this.headReceived) this.#headDone.reject(error);
  }

  /**
   * The response is complete but the server does not want the rest of the
   * request (RST_STREAM NO_ERROR after END_STREAM): pending and later writes
   * reject, the response stays readable.
   */
  stopSending(error: Error): void {
    this.rejectPending(error);
    this.localClosed = true;
  }

  protected override trailerList(trailers: readonly string[]): readonly string[] {
    return appendH2Fields([], trailers, { dropPseudo: true });
  }
}
