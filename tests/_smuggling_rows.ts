/**
 * The rows of tests/smuggling_test.ts: malformed and ambiguous requests, what the
 * balancer must answer, and what may reach the backend (RFC 9112 §2–§7, RFC 9110).
 *
 * @module
 */

export interface Row {
  name: string;
  /** Raw bytes sent; an array is sent piece by piece, 30 ms apart. */
  request: string | string[];
  /** Status the balancer answers with. */
  status: number;
  /**
   * What the backend may receive: `0` (the default) for everything rejected at the
   * edge, before any forwarding; `"head"` when the head is valid and may be forwarded
   * before the body turns out malformed (the malformed bytes still never are).
   */
  backendBytes?: 0 | "head";
  /** Bytes that must never reach the backend (the malformed part of a body). */
  forbidden?: string;
}

export const LIMITS = { maxRequestLine: 1024, maxHead: 4096, maxBody: 1024 };
/** {@linkcode LIMITS} as a config section. */
export const LIMITS_YAML =
  `limits: { max_request_line: ${LIMITS.maxRequestLine}, max_head: ${LIMITS.maxHead}, max_body: ${LIMITS.maxBody} }`;
export const H = "Host: app.test\r\n";

export const ROWS: Row[] = [
  // ---- Content-Length / Transfer-Encoding ambiguity (RFC 9112 §6.3)
  {
    name: "Content-Length and Transfer-Encoding together (CL.TE)",
    request:
      `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`,
    status: 400,
  },
  {
    name: "Transfer-Encoding then Content-Length (TE.CL)",
    request:
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "two Content-Length fields that differ",
    request: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
    status: 400,
  },
  {
    name: "one Content-Length field with differing values",
    request: `POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`,
    status: 400,
  },
  {
    name: 'Content-Length "abc"',
    request: `POST / HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n`,
    status: 400,
  },
  {
    name: 'Content-Length "-1"',
    request: `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`,
    status: 400,
  },
  {
    name: 'Content-Length "1 2"',
    request: `POST / HTTP/1.1\r\n${H}Content-Length: 1 2\r\n\r\n`,
    status: 400,
  },
  {
    name: 'Content-Length "+5"',
    request: `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`,
    status: 400,
  },
  {
    name: 'Content-Length in hex "0x5"',
    request: `POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`,
    status: 400,
  },
  {
    name: 'Transfer-Encoding "gzip" alone (not ending in chunked)',
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nxxxx`,
    status: 400,
  },
  {
    name: 'Transfer-Encoding "chunked, gzip"',
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding chunked twice in two fields",
    request:
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: 'unknown Transfer-Encoding "foo" → 501',
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: foo\r\n\r\n0\r\n\r\n`,
    status: 501,
  },
  {
    name: 'obfuscated Transfer-Encoding "xchunked" → 501',
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
    status: 501,
  },
  {
    name: "empty Transfer-Encoding",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding in an HTTP/1.0 request",
    request: `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding value behind a vertical tab",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  // ---- field syntax (RFC 9112 §5)
  {
    name: "whitespace before the colon (Transfer-Encoding : chunked)",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "whitespace before the colon of Host",
    request: "GET / HTTP/1.1\r\nHost : app.test\r\n\r\n",
    status: 400,
  },
  {
    name: 'invalid byte "@" in a field name',
    request: `GET / HTTP/1.1\r\n${H}X@Y: 1\r\n\r\n`,
    status: 400,
  },
  {
    name: "NUL in a field name",
    request: `GET / HTTP/1.1\r\n${H}X\x00Y: 1\r\n\r\n`,
    status: 400,
  },
  {
    name: "non-ASCII byte in a field name",
    request: `GET / HTTP/1.1\r\n${H}X\xe9: 1\r\n\r\n`,
    status: 400,
  },
  {
    name: "NUL in a field value",
    request: `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`,
    status: 400,
  },
  {
    name: "bare CR inside a field value",
    request: `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`,
    status: 400,
  },
  {
    name: "bare CR ending a field line",
    request: `GET / HTTP/1.1\r\n${H}X-A: a\rTransfer-Encoding: chunked\r\n\r\n`,
    status: 400,
  },
  {
    name: "bare LF line endings throughout",
    request: "GET / HTTP/1.1\nHost: app.test\n\n",
    status: 400,
  },
  {
    name: "bare LF ending one field line (hiding Transfer-Encoding)",
    request: `POST / HTTP/1.1\r\n${H}X-A: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "obs-fold continuation line",
    request: `GET / HTTP/1.1\r\n${H}X-A: a\r\n  folded\r\n\r\n`,
    status: 400,
  },
  {
    name: "obs-fold continuing Transfer-Encoding",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "field line without a colon",
    request: `GET / HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`,
    status: 400,
  },
  // ---- Host (RFC 9112 §3.2)
  {
    name: "missing Host in HTTP/1.1",
    request: "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
    status: 400,
  },
  {
    name: "two Host fields",
    request: "GET / HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
    status: 400,
  },
  {
    name: "Host that is a list",
    request: "GET / HTTP/1.1\r\nHost: app.test, evil.test\r\n\r\n",
    status: 400,
  },
  {
    name: "Host with userinfo",
    request: "GET / HTTP/1.1\r\nHost: evil.test@app.test\r\n\r\n",
    status: 400,
  },
  {
    name: "Host with a path",
    request: "GET / HTTP/1.1\r\nHost: app.test/admin\r\n\r\n",
    status: 400,
  },
  // ---- request line (RFC 9112 §3)
  {
    name: "HTTP/2 connection preface",
    request: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    status: 505,
  },
  {
    name: "version HTTP/2.0 → 505",
    request: `GET / HTTP/2.0\r\n${H}\r\n`,
    status: 505,
  },
  {
    name: "garbage version → 400",
    request: `GET / HTXP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "lower-case version → 400",
    request: `GET / http/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "two spaces in the request line",
    request: `GET  / HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "space inside the request target",
    request: `GET /a b HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "request target with a #fragment (RFC 9112 §3.2: never part of a target)",
    request: `GET /a#b HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "absolute-form target with an empty #fragment",
    request: `GET http://app.test/# HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "method that is not a token",
    request: `G<T / HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "request target not origin, absolute or asterisk form",
    request: `GET app.test/x HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "absolute-form target with a non-http scheme",
    request: `GET ftp://app.test/x HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "absolute-form target with an empty authority",
    request: `GET http:///x HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "absolute-form target with userinfo",
    request: `GET http://evil.test@app.test/x HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "asterisk-form target with a method other than OPTIONS",
    request: `GET * HTTP/1.1\r\n${H}\r\n`,
    status: 400,
  },
  {
    name: "CONNECT in authority form → 405",
    request: "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n",
    status: 405,
  },
  {
    name: "CONNECT with an origin-form target → 405",
    request: `CONNECT / HTTP/1.1\r\n${H}\r\n`,
    status: 405,
  },
  // ---- limits (DESIGN.md limits:)
  {
    name: "request line longer than limits.max_request_line → 414",
    request: `GET /${"a".repeat(LIMITS.maxRequestLine + 10)} HTTP/1.1\r\n${H}\r\n`,
    status: 414,
  },
  {
    name: "request line that never ends, past limits.max_head → 414",
    request: `GET /${"a".repeat(LIMITS.maxHead + 100)}`,
    status: 414,
  },
  {
    name: "complete head larger than limits.max_head in one write → 431",
    request: `GET / HTTP/1.1\r\n${H}${`X-Pad: ${"p".repeat(93)}\r\n`.repeat(60)}\r\n`,
    status: 431,
  },
  {
    name: "head growing past limits.max_head without an end → 431",
    request: `GET / HTTP/1.1\r\n${H}${`X-Pad: ${"p".repeat(93)}\r\n`.repeat(60)}`,
    status: 431,
  },
  {
    name: "Content-Length over limits.max_body → 413",
    request: `POST / HTTP/1.1\r\n${H}Content-Length: ${LIMITS.maxBody + 1}\r\n\r\n`,
    status: 413,
  },
  // ---- Expect (RFC 9110 §10.1.1)
  {
    name: "Expect other than 100-continue → 417",
    request: `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nExpect: something-else\r\n\r\n`,
    status: 417,
  },
  // ---- chunked bodies whose framing breaks after a valid head (RFC 9112 §7.1)
  {
    name: "chunk size that is not hex",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: "negative chunk size",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-1\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: 'chunk size with a "0x" prefix',
    request:
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x8\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: "chunk size that overflows (17 hex digits)",
    request:
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000008\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: "chunk size line ended by a bare LF",
    request: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n8\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: "chunk data longer than its size (missing CRLF after the data)",
    request:
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\n\r\n`,
    status: 400,
    backendBytes: "head",
    forbidden: "/smuggled",
  },
  {
    name: "bad chunk size arriving after the head was forwarded",
    request: [
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n4\r\nokay\r\n`,
      "zz\r\nSMUGGLED\r\n0\r\n\r\n",
    ],
    status: 400,
    backendBytes: "head",
    forbidden: "SMUGGLED",
  },
  {
    name: "chunked body over limits.max_body → 413",
    request: [
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`,
      `${(LIMITS.maxBody + 1).toString(16)}\r\n${"x".repeat(LIMITS.maxBody + 1)}\r\n0\r\n\r\n`,
    ],
    status: 413,
    backendBytes: "head",
    forbidden: "x".repeat(LIMITS.maxBody + 1),
  },
];
