/**
 * Short plain-text responses the balancer writes itself (errors, redirects).
 *
 * @module
 */

/** Reason phrases for the statuses the balancer produces. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: "Continue",
  200: "OK",
  308: "Permanent Redirect",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  417: "Expectation Failed",
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
  const body = `${status} ${reason}: ${detail}\n`;
  let head = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${body.length}\r\n`;
  for (const h of options.headers ?? []) head += `${h}\r\n`;
  if (options.close) head += "connection: close\r\n";
  return options.headOnly ? head + "\r\n" : `${head}\r\n${body}`;
}
