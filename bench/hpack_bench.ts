/**
 * Cost of HPACK per HTTP/2 exchange: decoding a typical browser request header
 * block (first on a connection, then again with the dynamic table warm), and
 * encoding a typical response.
 *
 *     deno bench bench/hpack_bench.ts
 *
 * @module
 */
import { HpackDecoder, HpackEncoder } from "../src/h2/hpack.ts";

const REQUEST = [
  ":method",
  "GET",
  ":scheme",
  "https",
  ":authority",
  "shop.example.com",
  ":path",
  "/products/42?ref=home&utm_source=newsletter",
  "user-agent",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
  "accept",
  "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
  "accept-encoding",
  "gzip, deflate, br, zstd",
  "accept-language",
  "en-US,en;q=0.9,de;q=0.8",
  "cookie",
  "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1",
  "sec-fetch-mode",
  "navigate",
];
const RESPONSE = [
  ":status",
  "200",
  "content-type",
  "text/html; charset=utf-8",
  "content-length",
  "18342",
  "date",
  "Tue, 09 Jul 2024 10:00:00 GMT",
  "cache-control",
  "private, max-age=0",
  "server",
  "unload",
  "vary",
  "accept-encoding",
  "x-request-id",
  "5f0c2a9e-1d7b-4c55-9d2e-3b1f7d9a0c11",
];

// The first request on a connection: every field a literal, Huffman-coded.
const coldBlock = new HpackEncoder().encode(REQUEST).slice();
// A later request: the client's table already holds most fields.
const warmEncoder = new HpackEncoder();
warmEncoder.encode(REQUEST);
const warmBlock = warmEncoder.encode(REQUEST).slice();
const out: string[] = [];

Deno.bench("hpack decode request, cold table", { group: "decode", baseline: true }, () => {
  out.length = 0;
  new HpackDecoder().decode(coldBlock, 0, coldBlock.length, out);
});

const warmDecoder = new HpackDecoder();
warmDecoder.decode(coldBlock, 0, coldBlock.length, []);
Deno.bench("hpack decode request, warm table", { group: "decode" }, () => {
  out.length = 0;
  warmDecoder.decode(warmBlock, 0, warmBlock.length, out);
});

Deno.bench("hpack encode response, cold table", { group: "encode", baseline: true }, () => {
  new HpackEncoder().encode(RESPONSE);
});

const encoder = new HpackEncoder();
Deno.bench("hpack encode response, warm table", { group: "encode" }, () => {
  encoder.encode(RESPONSE);
});

const rawEncoder = new HpackEncoder({ huffman: false });
Deno.bench("hpack encode response, warm table, no Huffman", { group: "encode" }, () => {
  rawEncoder.encode(RESPONSE);
});
