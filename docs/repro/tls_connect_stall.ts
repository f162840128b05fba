// deno-lint-ignore-file no-console
// A TLS client connection whose handshake never finishes keeps its TCP socket after
// `conn.close()` (Deno 2.9.6). Run: deno run --allow-net tls_connect_stall.ts
// The server accepts and never answers; the client gives up after 500 ms and closes.
// Expected: the server sees EOF. (node:tls `connect()` + `destroy()` does release it.)
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const accepted = listener.accept();
const client = await Deno.connectTls({ hostname: "127.0.0.1", port: listener.addr.port });
setTimeout(() => client.close(), 500);
const why = await client.handshake().then(() => "done", (e) => (e as Error).message);
const server = await accepted;
const buf = new Uint8Array(4096);
const seen = await Promise.race([
  (async () => {
    while ((await server.read(buf)) !== null); // the ClientHello, then EOF
    return "EOF";
  })().catch(() => "reset"),
  new Promise((r) => setTimeout(() => r("still open"), 3000)),
]);
console.log(`Deno ${Deno.version.deno}: client handshake: ${why}; server sees: ${seen}`);
Deno.exit(seen === "EOF" ? 0 : 1);
