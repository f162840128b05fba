// deno-lint-ignore-file no-console
/**
 * What `compress` costs per MiB: CPU time (user + system, from the process's
 * own counters) of each coding at the level `compress` uses, over text (this
 * repository's TypeScript and Markdown) and JSON (records as an API returns
 * them), fed in 64 KiB pieces, each flushed as the proxy does. Web
 * `CompressionStream` (gzip and brotli, whole body, no flush) is shown for
 * comparison: it is the other coder Deno 2.9.6 has.
 *
 * ```sh
 * deno run --allow-read bench/compress_cost.ts
 * ```
 *
 * @module
 */
import process from "node:process";
import {
  BROTLI_QUALITY,
  type Coding,
  GZIP_LEVEL,
  StreamEncoder,
  ZSTD_LEVEL,
} from "../src/policy/encoder.ts";

const PIECE = 64 * 1024;
const ROUNDS = 3;

function corpus(): { name: string; bytes: Uint8Array<ArrayBuffer> }[] {
  const root = new URL("../", import.meta.url).pathname;
  const parts: Uint8Array[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (/\.(ts|md)$/.test(e.name)) parts.push(Deno.readFileSync(p));
    }
  };
  walk(`${root}src`);
  walk(`${root}docs`);
  const text = concat(parts);
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const records = [];
  for (let i = 0; i < 40000; i++) {
    records.push({
      id: i,
      name: `user${Math.floor(rnd() * 1e6)}`,
      email: `u${Math.floor(rnd() * 1e9)}@example.com`,
      score: rnd(),
      tags: ["a", "bb", "ccc"].slice(0, 1 + Math.floor(rnd() * 3)),
      active: rnd() > 0.5,
    });
  }
  return [
    { name: "text", bytes: text },
    { name: "json", bytes: new TextEncoder().encode(JSON.stringify(records)) },
  ];
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function encoder(coding: Coding, body: Uint8Array): Promise<number> {
  let out = 0;
  const sink = (p: Uint8Array) => {
    out += p.length;
    return undefined;
  };
  const e = new StreamEncoder(coding);
  for (let at = 0; at < body.length; at += PIECE) {
    await e.write(body.subarray(at, at + PIECE), sink);
  }
  await e.end(sink);
  e.close();
  return out;
}

async function webStream(format: string, body: Uint8Array<ArrayBuffer>): Promise<number> {
  const cs = new CompressionStream(format as CompressionFormat);
  const w = cs.writable.getWriter();
  const r = cs.readable.getReader();
  let out = 0;
  const reading = (async () => {
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      out += value.length;
    }
  })();
  for (let at = 0; at < body.length; at += PIECE) await w.write(body.subarray(at, at + PIECE));
  await w.close();
  await reading;
  return out;
}

const rows: [string, string, (b: Uint8Array<ArrayBuffer>) => Promise<number>][] = [
  ["gzip", `${GZIP_LEVEL}`, (b) => encoder("gzip", b)],
  ["br", `${BROTLI_QUALITY}`, (b) => encoder("br", b)],
  ["zstd", `${ZSTD_LEVEL}`, (b) => encoder("zstd", b)],
  ["CompressionStream gzip", "default", (b) => webStream("gzip", b)],
  ["CompressionStream brotli", "default", (b) => webStream("brotli", b)],
];

console.log(`compress cost per MiB — Deno ${Deno.version.deno}, best of ${ROUNDS}`);
console.log();
console.log("| body | coding | level | CPU ms per MiB | MiB/s on one core | size after |");
console.log("| --- | --- | --- | --- | --- | --- |");
for (const { name, bytes } of corpus()) {
  const mib = bytes.length / (1024 * 1024);
  for (const [coding, level, run] of rows) {
    let best = Infinity;
    let size = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const t = cpuMs();
      size = await run(bytes);
      best = Math.min(best, cpuMs() - t);
    }
    const perMib = best / mib;
    console.log(
      `| ${name} (${mib.toFixed(1)} MiB) | ${coding} | ${level} | ${perMib.toFixed(1)} | ${
        (1000 / perMib).toFixed(0)
      } | ${(100 * size / bytes.length).toFixed(1)}% |`,
    );
  }
}
