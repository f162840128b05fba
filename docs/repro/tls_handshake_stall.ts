// deno-lint-ignore-file no-console
// A TLS server connection whose handshake never finishes keeps its TCP socket after
// `conn.close()` (Deno 2.9.6). Run: deno run --allow-net tls_handshake_stall.ts
// The server closes each accepted connection after 500 ms; two clients then wait 3 s for
// EOF: one sent nothing, one the first 3 bytes of a ClientHello. Expected: both see EOF.
// The certificate is a throwaway self-signed one (localhost), only for this script.
const cert = `-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUZtDZvWbnobzEbOmTYpnZG9axtyEwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzExMzkwNloYDzIxMjYxMTEz
MTEzOTA2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQQ4QNnfXz/PpWfRDiGv5G8ol8Yl3+X7T30zYVgFrWneRWudLdAGOzl
rRDCjpGfmNAEZd5NOwdPHCgBBAXVZhbko2wwajAdBgNVHQ4EFgQU3W7NAt/ypASx
pbpQ39gjh5UIp9kwHwYDVR0jBBgwFoAU3W7NAt/ypASxpbpQ39gjh5UIp9kwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0E
AwIDSAAwRQIgAkOJ4PWzzBoSGp7OB7ulOAJNtzfI/PkGA3iUnAiEDT4CIQC8LG9w
hi3zytwC/aNnXZJqaGttwLNXri9kiVUiDgC5YA==
-----END CERTIFICATE-----`;
const key = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6l2pW2Y/EtM8oZ8e
EzElh5sp3iayEeDFqlKNb1ZhtzShRANCAAQQ4QNnfXz/PpWfRDiGv5G8ol8Yl3+X
7T30zYVgFrWneRWudLdAGOzlrRDCjpGfmNAEZd5NOwdPHCgBBAXVZhbk
-----END PRIVATE KEY-----`;
const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
(async () => {
  for await (const conn of listener) setTimeout(() => conn.close(), 500);
})();
const seen = (c: Deno.Conn) =>
  Promise.race([
    c.read(new Uint8Array(64)).then((n) => n === null ? "EOF" : "data", () => "reset"),
    new Promise((r) => setTimeout(() => r("still open"), 3000)),
  ]);
const silent = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
const partial = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
await partial.write(new Uint8Array([0x16, 0x03, 0x01]));
const [a, b] = await Promise.all([seen(silent), seen(partial)]);
console.log(`Deno ${Deno.version.deno}: sent nothing: ${a}; sent 3 bytes: ${b}`);
Deno.exit(a === "EOF" && b === "EOF" ? 0 : 1);
