import { assertEquals, assertThrows } from "@std/assert";
import { parseRequestHead } from "../src/http1/parse.ts";
import { parseHashKey } from "../src/config/hash_key.ts";
import { MAX_KEY_LENGTH, requestKey } from "../src/proxy/request_key.ts";

function keyOf(spec: string, fields: string, clientIp = "192.0.2.7"): string | undefined {
  const head = parseRequestHead(`GET / HTTP/1.1\r\nHost: a\r\n${fields}\r\n`);
  return requestKey(parseHashKey(spec), { head, clientIp });
}

Deno.test("request key client_ip is the connection's address", () => {
  assertEquals(keyOf("client_ip", "X-Forwarded-For: 10.9.9.9\r\n"), "192.0.2.7");
  assertEquals(keyOf("client_ip", "", "::1"), "::1");
});

Deno.test("request key header:NAME is the first field of that name, in any case, trimmed", () => {
  assertEquals(keyOf("header:x-user", "X-USER:  alice \r\nx-user: bob\r\n"), "alice");
  assertEquals(keyOf("header:X-User", "x-user: carol\r\n"), "carol");
  assertEquals(keyOf("header:x-user", "x-users: dave\r\nx-use: eve\r\n"), undefined);
  assertEquals(keyOf("header:x-user", "x-user:\r\n"), undefined, "an empty value is no key");
  assertEquals(keyOf("header:host", ""), "a");
});

Deno.test("request key hashes only the first 1 KiB of a long value, without error", () => {
  const long = "a".repeat(MAX_KEY_LENGTH) + "tail";
  assertEquals(keyOf("header:x-user", `x-user: ${long}\r\n`), "a".repeat(MAX_KEY_LENGTH));
  assertEquals(keyOf("cookie:sid", `cookie: sid=${long}\r\n`), "a".repeat(MAX_KEY_LENGTH));
});

Deno.test("request key cookie:NAME finds the cookie by exact name in every Cookie field", () => {
  assertEquals(keyOf("cookie:sid", "Cookie: a=1; sid=xyz; b=2\r\n"), "xyz");
  assertEquals(keyOf("cookie:sid", "Cookie: sid=first;sid=second\r\n"), "first");
  assertEquals(keyOf("cookie:sid", "Cookie: xsid=1; SID=2\r\nCookie: sid=3\r\n"), "3");
  assertEquals(keyOf("cookie:sid", 'Cookie: sid="quoted" \r\n'), "quoted");
  assertEquals(keyOf("cookie:sid", "Cookie: a=1;sid=\r\n"), undefined);
  assertEquals(keyOf("cookie:sid", "Cookie: sid\r\n"), undefined);
  assertEquals(keyOf("cookie:sid", "X-Cookie: sid=1\r\n"), undefined);
  assertEquals(keyOf("cookie:sid", ""), undefined);
});

Deno.test("request key specs other than client_ip, header:NAME and cookie:NAME are refused", () => {
  for (const bad of ["", "ip", "header", "header:", "cookie:a b", "query:x", "header:x:y"]) {
    assertThrows(() => parseHashKey(bad), TypeError, "Hash key must be client_ip");
  }
});
