import { assertEquals, assertThrows } from "@std/assert";
import {
  ChunkedParser,
  CHUNKS_DONE,
  type Framing,
  requestFraming,
  responseFraming,
} from "../src/http1/body.ts";
import { HttpError } from "../src/http1/head.ts";
import { parseRequestHead, parseResponseHead } from "../src/http1/parse.ts";

const enc = new TextEncoder();

function req(fields: string, version = "HTTP/1.1", method = "POST"): Framing {
  return requestFraming(parseRequestHead(`${method} / ${version}\r\nHost: a\r\n${fields}\r\n`));
}

function res(fields: string, options: { status?: number; method?: string; version?: string } = {}) {
  const head = parseResponseHead(
    `${options.version ?? "HTTP/1.1"} ${options.status ?? 200} X\r\n${fields}\r\n`,
  );
  return responseFraming(head, options.method ?? "GET");
}

function status(fn: () => unknown): number {
  return assertThrows(fn, HttpError).status;
}

const NONE: Framing = { kind: "none", length: 0 };
const CHUNKED: Framing = { kind: "chunked", length: 0 };
const CLOSE: Framing = { kind: "close", length: 0 };

// ---------------------------------------------------------------- requestFraming

Deno.test("requestFraming: no Content-Length and no Transfer-Encoding means no body", () => {
  assertEquals(req(""), NONE);
  assertEquals(req("", "HTTP/1.0"), NONE);
});

Deno.test("requestFraming: Content-Length gives a length body, and 0 gives none", () => {
  assertEquals(req("Content-Length: 5\r\n"), { kind: "length", length: 5 });
  assertEquals(req("Content-Length: 0\r\n"), NONE);
  assertEquals(req("Content-Length: 007\r\n"), { kind: "length", length: 7 });
  assertEquals(req("Content-Length: 5\r\n", "HTTP/1.0"), { kind: "length", length: 5 });
});

Deno.test("requestFraming accepts repeated identical Content-Length values (5, 5 and two fields)", () => {
  assertEquals(req("Content-Length: 5, 5\r\n"), { kind: "length", length: 5 });
  assertEquals(req("Content-Length: 5\r\nContent-Length: 5\r\n"), { kind: "length", length: 5 });
});

Deno.test("requestFraming rejects differing Content-Length values with 400", () => {
  assertEquals(status(() => req("Content-Length: 5, 6\r\n")), 400);
  assertEquals(status(() => req("Content-Length: 5\r\nContent-Length: 6\r\n")), 400);
  assertEquals(
    status(() => req("Content-Length: 0\r\nContent-Length: 00\r\nContent-Length: 1\r\n")),
    400,
  );
});

Deno.test("requestFraming rejects a malformed Content-Length with 400", () => {
  for (
    const v of ["abc", "-1", "+5", "1 2", "5,", ",5", "0x10", "1e3", "5.0", "", "1234567890123456"]
  ) {
    assertEquals(status(() => req(`Content-Length: ${v}\r\n`)), 400, JSON.stringify(v));
  }
});

Deno.test("requestFraming: Transfer-Encoding chunked gives a chunked body (any case)", () => {
  assertEquals(req("Transfer-Encoding: chunked\r\n"), CHUNKED);
  assertEquals(req("Transfer-Encoding: CHUNKED\r\n"), CHUNKED);
  assertEquals(req("Transfer-Encoding: gzip, chunked\r\n"), CHUNKED);
  assertEquals(req("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), CHUNKED);
});

Deno.test("requestFraming rejects Transfer-Encoding together with Content-Length with 400", () => {
  assertEquals(status(() => req("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), 400);
  assertEquals(status(() => req("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n")), 400);
});

Deno.test("requestFraming rejects a Transfer-Encoding that does not end in chunked with 400", () => {
  assertEquals(status(() => req("Transfer-Encoding: gzip\r\n")), 400);
  assertEquals(status(() => req("Transfer-Encoding: chunked, gzip\r\n")), 400);
  assertEquals(status(() => req("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n")), 400);
});

Deno.test("requestFraming rejects chunked applied twice with 400", () => {
  assertEquals(status(() => req("Transfer-Encoding: chunked, chunked\r\n")), 400);
  assertEquals(
    status(() => req("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")),
    400,
  );
});

Deno.test("requestFraming rejects an empty Transfer-Encoding with 400", () => {
  assertEquals(status(() => req("Transfer-Encoding: \r\n")), 400);
  assertEquals(status(() => req("Transfer-Encoding: ,\r\n")), 400);
});

Deno.test("requestFraming answers 501 to an unknown transfer coding", () => {
  assertEquals(status(() => req("Transfer-Encoding: foo\r\n")), 501);
  assertEquals(status(() => req("Transfer-Encoding: foo, chunked\r\n")), 501);
  assertEquals(status(() => req("Transfer-Encoding: chunked;q=1\r\n")), 501);
});

Deno.test("requestFraming rejects Transfer-Encoding in an HTTP/1.0 request with 400", () => {
  assertEquals(status(() => req("Transfer-Encoding: chunked\r\n", "HTTP/1.0")), 400);
});

// ---------------------------------------------------------------- responseFraming

Deno.test("responseFraming: a response to HEAD has no body whatever its fields say", () => {
  assertEquals(res("Content-Length: 100\r\n", { method: "HEAD" }), NONE);
  assertEquals(res("Transfer-Encoding: chunked\r\n", { method: "HEAD" }), NONE);
});

Deno.test("responseFraming: 1xx, 204 and 304 responses have no body", () => {
  for (const s of [100, 101, 103, 204, 304]) {
    assertEquals(res("Content-Length: 10\r\n", { status: s }), NONE, String(s));
    assertEquals(res("Transfer-Encoding: chunked\r\n", { status: s }), NONE, String(s));
  }
});

Deno.test("responseFraming: chunked as final coding in HTTP/1.1 is chunked", () => {
  assertEquals(res("Transfer-Encoding: chunked\r\n"), CHUNKED);
  assertEquals(res("Transfer-Encoding: gzip, chunked\r\n"), CHUNKED);
});

Deno.test("responseFraming: a Transfer-Encoding not ending in chunked is read until close", () => {
  assertEquals(res("Transfer-Encoding: gzip\r\n"), CLOSE);
  assertEquals(res("Transfer-Encoding: chunked, gzip\r\n"), CLOSE);
});

Deno.test("responseFraming: Transfer-Encoding in an HTTP/1.0 response is read until close", () => {
  assertEquals(res("Transfer-Encoding: chunked\r\n", { version: "HTTP/1.0" }), CLOSE);
});

Deno.test("responseFraming: Content-Length gives a length body; neither field means until close", () => {
  assertEquals(res("Content-Length: 3\r\n"), { kind: "length", length: 3 });
  assertEquals(res("Content-Length: 3, 3\r\n"), { kind: "length", length: 3 });
  assertEquals(res("Content-Length: 0\r\n"), NONE);
  assertEquals(res(""), CLOSE);
});

Deno.test("responseFraming answers 502 to ambiguous or malformed framing", () => {
  assertEquals(status(() => res("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n")), 502);
  assertEquals(status(() => res("Content-Length: 3, 4\r\n")), 502);
  assertEquals(status(() => res("Content-Length: 3\r\nContent-Length: 4\r\n")), 502);
  assertEquals(status(() => res("Content-Length: x\r\n")), 502);
  assertEquals(status(() => res("Content-Length: -1\r\n")), 502);
  assertEquals(status(() => res("Transfer-Encoding: foo, chunked\r\n")), 502);
  assertEquals(status(() => res("Transfer-Encoding: chunked, chunked\r\n")), 502);
  assertEquals(status(() => res("Transfer-Encoding: \r\n")), 502);
});

// ---------------------------------------------------------------- ChunkedParser

interface Parsed {
  data: string;
  done: boolean;
  consumed: number;
  total: number;
}

/** Feeds `pieces` one after another, as a relay would, collecting the data bytes. */
function feed(pieces: string[], errorStatus = 400): Parsed {
  const p = new ChunkedParser(errorStatus);
  let pending = new Uint8Array(0);
  let data = "";
  let consumed = 0;
  for (const piece of pieces) {
    const bytes = enc.encode(piece);
    const next = new Uint8Array(pending.length + bytes.length);
    next.set(pending);
    next.set(bytes, pending.length);
    pending = next;
    let pos = 0;
    for (;;) {
      if (p.inData) {
        const n = Math.min(p.remaining, pending.length - pos);
        data += new TextDecoder().decode(pending.subarray(pos, pos + n));
        pos += n;
        p.remaining -= n;
        if (p.remaining === 0) p.dataDone();
        else break;
        continue;
      }
      const before = pos;
      pos = p.framing(pending, pos, pending.length);
      if (p.state === CHUNKS_DONE || (pos === before && !p.inData)) break;
    }
    consumed += pos;
    pending = pending.subarray(pos);
  }
  return { data, done: p.state === CHUNKS_DONE, consumed, total: p.total };
}

function chunkStatus(body: string, errorStatus = 400): number {
  return assertThrows(() => feed([body], errorStatus), HttpError).status;
}

Deno.test("ChunkedParser reads sizes in hex (either case) and stops at the last chunk", () => {
  const body = "3\r\nabc\r\nA\r\n0123456789\r\na\r\nABCDEFGHIJ\r\n0\r\n\r\n";
  const r = feed([body + "GET /next"]);
  assertEquals(r.data, "abc0123456789ABCDEFGHIJ");
  assertEquals([r.done, r.total, r.consumed], [true, 23, body.length]);
});

Deno.test("ChunkedParser accepts leading zeros in a chunk size", () => {
  assertEquals(feed(["0003\r\nabc\r\n000\r\n\r\n"]).data, "abc");
});

Deno.test("ChunkedParser accepts chunk extensions, with BWS before the semicolon", () => {
  const r = feed(['3;name=value\r\nabc\r\n2 ; a="q s";b\r\nde\r\n0;last\r\n\r\n']);
  assertEquals([r.data, r.done], ["abcde", true]);
});

Deno.test("ChunkedParser accepts and skips trailer fields", () => {
  const r = feed(["1\r\nx\r\n0\r\nX-Sum: 1\r\nX-Other:v\r\n\r\n"]);
  assertEquals([r.data, r.done], ["x", true]);
});

Deno.test("ChunkedParser parses a body split at every possible byte boundary", () => {
  const body = "4;e=1\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
  for (let cut = 1; cut < body.length; cut++) {
    const r = feed([body.slice(0, cut), body.slice(cut)]);
    assertEquals([r.data, r.done, r.consumed], ["Wikipedia", true, body.length], `cut ${cut}`);
  }
  const bytewise = feed([...body]);
  assertEquals([bytewise.data, bytewise.done], ["Wikipedia", true]);
});

Deno.test("ChunkedParser waits for more bytes on an incomplete body", () => {
  const r = feed(["5\r\nhel"]);
  assertEquals([r.data, r.done], ["hel", false]);
  assertEquals(feed(["5\r\nhello\r\n0\r\n"]).done, false);
});

Deno.test("ChunkedParser rejects a malformed chunk size with the error status given", () => {
  for (const size of ["g", "-1", "+1", " 1", "0x1", "", "1 1", "1\t", "\xff"]) {
    assertEquals(chunkStatus(`${size}\r\nx\r\n0\r\n\r\n`), 400, JSON.stringify(size));
  }
  assertEquals(chunkStatus("zz\r\n", 502), 502);
});

Deno.test("ChunkedParser rejects a chunk size of more than 13 hex digits", () => {
  assertEquals(chunkStatus("fffffffffffff0\r\n"), 400);
  assertEquals(chunkStatus("10000000000000000\r\n"), 400);
  const ok = new ChunkedParser(400);
  const b = enc.encode("fffffffffffff\r\n");
  ok.framing(b, 0, b.length);
  assertEquals(ok.remaining, 0xfffffffffffff);
});

Deno.test("ChunkedParser rejects data not followed by CRLF", () => {
  assertEquals(chunkStatus("3\r\nabcd\r\n0\r\n\r\n"), 400);
  assertEquals(chunkStatus("3\r\nabc\n0\r\n\r\n"), 400);
  assertEquals(chunkStatus("3\r\nabc\rX0\r\n\r\n"), 400);
  assertEquals(chunkStatus("3\r\nabc0\r\n\r\n"), 400);
});

Deno.test("ChunkedParser rejects size and trailer lines ended by a bare LF", () => {
  assertEquals(chunkStatus("3\nabc\r\n0\r\n\r\n"), 400);
  assertEquals(chunkStatus("0\n\n"), 400);
  assertEquals(chunkStatus("0\r\n\n"), 400);
  assertEquals(chunkStatus("0\r\nX: y\n\r\n"), 400);
});

Deno.test("ChunkedParser rejects control bytes in a chunk extension", () => {
  assertEquals(chunkStatus("1;a\x00b\r\nx\r\n0\r\n\r\n"), 400);
  assertEquals(chunkStatus("1;a\rb\r\nx\r\n0\r\n\r\n"), 400);
});

Deno.test("ChunkedParser rejects malformed trailer fields", () => {
  for (const t of ["NoColon", ": v", " X: v", "X : v", "X: a\x00b", "\tX: v"]) {
    assertEquals(chunkStatus(`0\r\n${t}\r\n\r\n`), 400, JSON.stringify(t));
  }
});

Deno.test("ChunkedParser rejects a size or trailer line longer than 4 KiB with no end", () => {
  assertEquals(chunkStatus("1;" + "e".repeat(5000)), 400);
  assertEquals(chunkStatus("0\r\nX: " + "v".repeat(5000)), 400);
});
