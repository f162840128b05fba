/**
 * Flood accounting for an HTTP/2 server connection: frames that cost the
 * server work without serving anyone ("glitches", as the CVE-2023-44487 and
 * CVE-2024-27316 write-ups call them) are counted per kind over a window, and
 * past a budget the connection is closed for abuse, with the kind that
 * dominated as the reason.
 *
 * What counts: PING and SETTINGS frames (every one, so only a rate beyond a
 * keepalive's is noticed), WINDOW_UPDATE frames beyond those our DATA frames
 * and the streams opened earned, empty DATA, HEADERS and CONTINUATION frames,
 * PRIORITY frames, streams reset before any response, refused, malformed or
 * oversized requests, and frames on closed streams. A WINDOW_UPDATE that
 * returns credit for DATA we sent is normal traffic, however small.
 *
 * @module
 */

/** Kinds of glitch, indexes into {@linkcode GLITCH_REASONS}. */
export const Glitch = {
  PING: 0,
  SETTINGS: 1,
  WINDOW_UPDATE: 2,
  EMPTY_FRAME: 3,
  PRIORITY: 4,
  RESET: 5,
  BAD_STREAM: 6,
  CLOSED_STREAM: 7,
} as const;

/** The `reason` label of each glitch kind, in {@linkcode Glitch} order. */
export const GLITCH_REASONS: readonly string[] = Object.freeze([
  "ping_flood",
  "settings_flood",
  "window_update_flood",
  "empty_frames",
  "priority_flood",
  "rapid_reset",
  "bad_streams",
  "closed_stream_frames",
]);

/** Every reason a connection is closed for abuse, as the metric's `reason` label. */
export const ABUSE_REASONS: readonly string[] = Object.freeze([
  ...GLITCH_REASONS,
  "header_block_too_large",
  "not_reading",
]);

const WHAT: readonly string[] = [
  "PING frames",
  "SETTINGS frames",
  "WINDOW_UPDATE frames returning no credit for DATA sent",
  "empty DATA, HEADERS or CONTINUATION frames",
  "PRIORITY frames",
  "streams reset before any response",
  "refused, malformed or oversized requests",
  "frames on closed streams",
];

/** Glitches tolerated per {@linkcode GLITCH_WINDOW_MS}. */
export const MAX_GLITCHES = 1000;
/** Window over which glitches are counted, ms. */
export const GLITCH_WINDOW_MS = 10_000;

/**
 * Glitch counts of one connection over a fixed window.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { Glitch, GlitchMeter } from "./abuse.ts";
 * const m = new GlitchMeter(3);
 * assertEquals([m.count(Glitch.PING, 0), m.count(Glitch.PING, 1), m.count(Glitch.RESET, 2)], [false, false, false]);
 * assertEquals(m.count(Glitch.PING, 3), true); // the 4th within the window
 * assertEquals(m.reason(), "ping_flood");
 * assertEquals(m.describe(), "4 frames that served nothing within 10 s, mostly PING frames (3)");
 * ```
 */
export class GlitchMeter {
  readonly #counts = new Uint32Array(GLITCH_REASONS.length);
  #total = 0;
  #start = -Infinity;
  #limit: number;

  /** A meter that reports past `limit` glitches per window. */
  constructor(limit: number = MAX_GLITCHES) {
    this.#limit = limit;
  }

  /**
   * Counts one glitch of `kind` at `now` (ms).
   * @returns True when the window's total went past the limit.
   */
  count(kind: number, now: number): boolean {
    if (now - this.#start > GLITCH_WINDOW_MS) {
      this.#start = now;
      this.#total = 0;
      this.#counts.fill(0);
    }
    this.#counts[kind]!++;
    return ++this.#total > this.#limit;
  }

  /** Starts over with a new limit (a connection already warned gets a smaller one). */
  restart(limit: number): void {
    this.#limit = limit;
    this.#total = 0;
    this.#counts.fill(0);
  }

  /** The `reason` label of the kind counted most in this window. */
  reason(): string {
    return GLITCH_REASONS[this.#worst()]!;
  }

  /** The window's count and its main kind, for a log line. */
  describe(): string {
    const k = this.#worst();
    return `${this.#total} frames that served nothing within ${GLITCH_WINDOW_MS / 1000} s, ` +
      `mostly ${WHAT[k]} (${this.#counts[k]})`;
  }

  #worst(): number {
    let worst = 0;
    for (let k = 1; k < this.#counts.length; k++) {
      if (this.#counts[k]! > this.#counts[worst]!) worst = k;
    }
    return worst;
  }
}
