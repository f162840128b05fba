/**
 * Test helpers for TLS: a throwaway CA and server certificates made with the
 * `openssl` command in a temp dir, what a client sees of a server's certificate
 * and a TLS backend (the client is `RawClient.tls` in `_http.ts`).
 *
 * @module
 */
import { keepAliveBackend, type RawServer } from "./_http.ts";

/** A server certificate and its key, as files. */
export interface IssuedCert {
  /** Path of the PEM certificate. */
  cert: string;
  /** Path of the PEM private key (PKCS#8, unencrypted). */
  key: string;
  /** Serial number in upper-case hex without leading zeros. */
  serial: string;
}

/** A throwaway certificate authority in a temp dir; `await using` removes it. */
export interface TestCa extends AsyncDisposable {
  /** The temp dir holding every file. */
  dir: string;
  /** Path of the CA certificate (what clients trust). */
  ca: string;
  /** PEM text of the CA certificate. */
  caPem: string;
  /**
   * Issues a server certificate for `names` (DNS names or IPv4 literals) with
   * the given serial, written as `<file>.pem` and `<file>.key` in `dir`; with
   * `client: true`, a client certificate (extendedKeyUsage clientAuth) instead.
   */
  issue(
    file: string,
    options: { serial: number; names?: string[]; client?: boolean },
  ): Promise<IssuedCert>;
  /** Deletes the temp dir (idempotent). */
  remove(): Promise<void>;
}

/** Runs `openssl` with `args` in `cwd`. @throws {Error} with its stderr when it fails. */
export async function openssl(args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`openssl ${args[0]} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/**
 * Makes a CA (EC P-256, valid 2 days) in a new temp dir.
 *
 * @example
 * ```ts ignore
 * const ca = await makeCa();
 * const { cert, key } = await ca.issue("server", { serial: 1, names: ["app.test", "127.0.0.1"] });
 * await ca.remove();
 * ```
 */
export async function makeCa(): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "unload-tls-" });
  let removed: Promise<void> | undefined;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-subj",
    "/CN=unload test CA",
    "-days",
    "2",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return {
    dir,
    ca: `${dir}/ca.pem`,
    caPem: await Deno.readTextFile(`${dir}/ca.pem`),
    async issue(file, { serial, names = ["app.test", "localhost", "127.0.0.1"], client }) {
      const san = names.map((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n) ? `IP:${n}` : `DNS:${n}`);
      await Deno.writeTextFile(
        `${dir}/${file}.ext`,
        `subjectAltName=${san.join(",")}\nbasicConstraints=CA:FALSE\n` +
          `extendedKeyUsage=${client ? "clientAuth" : "serverAuth"}\nkeyUsage=digitalSignature\n`,
      );
      const subj = `/CN=${names[0]}`;
      await openssl(
        ["req", ...ec, "-keyout", `${file}.key`, "-out", `${file}.csr`, "-subj", subj],
        dir,
      );
      await openssl([
        "x509",
        "-req",
        "-in",
        `${file}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        String(serial),
        "-days",
        "2",
        "-extfile",
        `${file}.ext`,
        "-out",
        `${file}.pem`,
      ], dir);
      return {
        cert: `${dir}/${file}.pem`,
        key: `${dir}/${file}.key`,
        serial: serial.toString(16).toUpperCase(),
      };
    },
    remove() {
      return removed ??= Deno.remove(dir, { recursive: true });
    },
    [Symbol.asyncDispose]() {
      return removed ??= Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * The serial number (upper-case hex, no leading zeros) of the certificate that a
 * TLS server on 127.0.0.1:`port` presents, asking for `serverName`, as
 * `openssl s_client` sees it.
 */
export async function servedSerial(port: number, serverName = "app.test"): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `openssl s_client -connect 127.0.0.1:${port} -servername ${serverName} </dev/null 2>/dev/null` +
      ` | openssl x509 -noout -serial`,
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  const m = /serial=([0-9A-F]+)/i.exec(new TextDecoder().decode(out.stdout));
  if (!m) throw new Error(`no certificate served on port ${port}`);
  return m[1]!.replace(/^0+(?=.)/, "").toUpperCase();
}

/** Copies a certificate and key over `to` (the files a balancer is configured with). */
export async function installCert(from: IssuedCert, to: { cert: string; key: string }) {
  // written to a temp name and renamed, as deploy tools do: never a half-written file
  for (const [src, dst] of [[from.key, to.key], [from.cert, to.cert]] as const) {
    await Deno.copyFile(src, `${dst}.tmp`);
    await Deno.rename(`${dst}.tmp`, dst);
  }
}

/**
 * A keep-alive HTTP backend behind TLS (`Deno.listenTls`) with `cert`, answering
 * `tls PATH` to every request (see {@linkcode keepAliveBackend}); counts the
 * connections it accepted.
 */
export function tlsBackend(cert: IssuedCert): RawServer {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(cert.cert),
    key: Deno.readTextFileSync(cert.key),
  });
  return keepAliveBackend("tls", { listener });
}
