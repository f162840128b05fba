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
