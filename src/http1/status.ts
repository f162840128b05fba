/**
 * Short plain-text responses the balancer writes itself (errors, redirects).
 *
 * @module
 */

/** Reason phrases for the statuses the balancer produces. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: "Continue",
  200: "OK",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Options for {@linkcode simpleResponse}. */
export interface SimpleResponseOptions {
  /** Add `Connection: close`. @default {false} */
  close?: boolean;
  /** Extra header lines, each without CRLF. */
  headers?: string[];
  /** Omit the body (answer to HEAD). @default {false} */
  headOnly?: boolean;
  /**
   * A body of its own (an auth service's answer, passed on) instead of the short
   * text one: `headers` are then all its fields but `Content-Length`.
   */
  body?: Uint8Array;
}

/**
 * What a client is told for a failure on the balancer's side, instead of the
 * detail: which backend address failed and the OS error are for the log and the
 * metrics, never for the client (as HAProxy and nginx do).
 */
const GENERIC: Readonly<Record<number, string>> = {
  500: "internal error",
  502: "no valid response from the backend",
  503: "no backend is available",
  504: "the backend did not answer in time",
};

/**
 * The short plain-text body of a response the balancer makes itself (any
 * protocol): `STATUS REASON: detail` and a newline. The detail is shown for
 * errors in the request (4xx, 501, 505); a 500, 502, 503 or 504 gets a generic
 * text instead, since its detail (a backend's address, an OS error) is the
 * balancer's inside: it goes to the access log and the event log.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { simpleBody } from "./status.ts";
 * assertEquals(simpleBody(404, "no route for a/"), "404 Not Found: no route for a/\n");
 * assertEquals(
 *   simpleBody(502, "Connect to 10.0.0.7:8080 failed: Connection refused (os error 111)"),
 *   "502 Bad Gateway: no valid response from the backend\n",
 * );
 * ```
 *
 * @param status The status code.
 * @param detail What happened (shown only when it is about the request).
 * @returns The body text.
 */
export function simpleBody(status: number, detail: string): string {
  return `${status} ${STATUS_TEXT[status] ?? "Error"}: ${GENERIC[status] ?? detail}\n`;
}

/**
 * The HTTP/1.1 head of an answer carrying a body of its own ({@linkcode SimpleResponseOptions.body}):
 * the status line, `options.headers`, `content-length: bodyLength`, and `connection: close`
 * when asked for.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { answerHead } from "./status.ts";
 * assertEquals(
 *   answerHead(302, 4, { headers: ["Location: /login", "Content-Type: text/plain"] }),
 *   "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Type: text/plain\r\ncontent-length: 4\r\n\r\n",
 * );
 * ```
 */
export function answerHead(
  status: number,
  bodyLength: number,
  options: SimpleResponseOptions = {},
): string {
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n`;
  for (const h of options.headers ?? []) head += `${h}\r\n`;
  // a 204 or 304 has no body and says nothing of one
  if (status !== 204 && status !== 304) head += `content-length: ${bodyLength}\r\n`;
  if (options.close) head += "connection: close\r\n";
  return head + "\r\n";
}

/**
 * Builds a complete HTTP/1.1 response with a short plain-text body.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { simpleResponse } from "./status.ts";
 * const r = simpleResponse(503, "no healthy backend for route app", { close: true });
 * assert(r.startsWith("HTTP/1.1 503 Service Unavailable\r\n"));
 * ```
 */
export function simpleResponse(
  status: number,
  detail: string,
  options: SimpleResponseOptions = {},
): string {
  const reason = STATUS_TEXT[status] ?? "Error";
  const body = simpleBody(status, detail);
  let head = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${body.length}\r\n`;
  for (const h of options.headers ?? []) head += `${h}\r\n`;
  if (options.close) head += "connection: close\r\n";
  return options.headOnly ? head + "\r\n" : `${head}\r\n${body}`;
}
