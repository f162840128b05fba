/**
 * An HTTPS accept loop whose certificates can be replaced without a restart.
 * One certificate is served as is; several are chosen per handshake by the
 * name the client asked for (SNI, see {@linkcode SniIndex}), through the
 * resolver `Deno.listenTls` takes under `Symbol.for("unstableSniResolver")`.
 *
 * Deno cannot swap the certificates of a live `Deno.TlsListener` (and its
 * resolver caches the answer for every name it was asked, for the listener's
 * life), so a reload binds a replacement listener on the same address
 * (`reusePort`, so both are bound for a moment; close-then-bind where that is
 * unsupported) and stops the old accept loop: new handshakes get the new
 * certificates, open connections carry on with theirs. Reloads happen on request
 * (SIGHUP: every pair, all or nothing) and when one pair's files change (polled by
 * a {@linkcode FileWatch} per pair: that pair alone; a bad file is refused and the
 * pair keeps its certificate).
 *
 * @module
 */
import type { HostPort } from "../config/address.ts";
import { accept, type Acceptor, bindError, ensureFree } from "./listener.ts";
import type { Logger } from "../observe/log.ts";
import { loadTls, type TlsFiles, type TlsPaths, validity } from "./tls_files.ts";
import { FileWatch } from "./file_watch.ts";
import { SniIndex } from "./sni.ts";

/**
 * The certificate and key files (one pair, or several chosen by SNI, the first
 * by default), whether to watch them (`tls.watch`) and how often to look
 * (`reload.interval`, in ms; default 1000).
 */
export interface WatchedTlsPaths {
  /** The pairs, in config order. */
  certificates: readonly TlsPaths[];
  /** Reload a pair when its files change. @default {true} */
  watch?: boolean;
  /** Time between two looks at the files, in ms. @default {1000} */
  interval?: number;
}

/** A served certificate, as `/status` and the metrics show it. */
export interface ServedCertificate {
  /** Path of its certificate file. */
  cert: string;
  /** Path of its key file. */
  key: string;
  /** Its DNS names (subjectAltName). */
  names: string[];
  /** Its subject, e.g. `CN=app.test`. */
  subject: string;
  /** Its serial number in hex. */
  serial: string;
  /** When it expires. */
  notAfter: Date;
}

/** Options for {@linkcode TlsAcceptor.start}. */
export interface TlsAcceptorOptions {
  /** Where to listen. */
  addr: HostPort;
  /** Certificate and key files (the `tls:` section); `watch`: reload when they change. */
  tls: WatchedTlsPaths;
  /** Serves one accepted connection; resolves to it when done, never rejects. */
  handle: (conn: Deno.Conn) => Promise<Deno.Conn>;
  /** Told when accepting fails for lack of descriptors (see {@linkcode accept}). */
  onExhausted?: (e: unknown) => void;
  /** Reload messages go here. */
  log: Logger;
  /** Join a port other workers of this balancer already bound (skip the in-use check). */
  join?: boolean;
  /**
   * `listen.proxy_protocol`: `addr` is then a plain TCP listener whose connections
   * are handed to `hop` with the address of the TLS listener, bound on 127.0.0.1
   * (see `TlsHops`: the PROXY header is read before TLS, then the bytes are carried
   * to the TLS listener).
   */
  hop?: (conn: Deno.Conn, tls: Deno.NetAddr) => Promise<Deno.Conn>;
  /**
   * Distinct server names the listener's resolver answers before the listener is renewed.
   * @default {SNI_NAMES_PER_LISTENER}
   */
  sniNames?: number;
  /** The listener's name in errors and log lines. @default {"listen.https"} */
  what?: string;
  /** The protocols offered by ALPN, preferred first; [] offers none. @default {["h2", "http/1.1"]} */
  alpnProtocols?: readonly string[];
}

// Where the TLS listener behind a PROXY hop is bound (a port chosen by the system).
const LOOPBACK: HostPort = { hostname: "127.0.0.1", port: 0 };

/**
 * Distinct server names one listener's resolver may be asked before the listener
 * is renewed: Deno keeps the answer for each name (a copy of the certificate and
 * key) as long as the listener lives, so clients inventing names would grow it
 * without end.
 */
export const SNI_NAMES_PER_LISTENER = 4096;

/**
 * The accept loop of `listen.https`, with certificate reloads.
 *
 * @example
 * ```ts ignore
 * const a = await TlsAcceptor.start({ addr, tls: { certificates: [{ cert, key }] }, handle, log });
 * await a.reload(); // after replacing the files: new handshakes use the new certificate
 * a.stop();
 * await a.done;
 * ```
 */
export class TlsAcceptor implements Acceptor {
  readonly #options: TlsAcceptorOptions;
  #paths: readonly TlsPaths[];
  #interval: number | undefined;
  #served: TlsFiles[];
  #current: Acceptor;
  /** The public plain-TCP loop in front of the TLS listener (`hop` only). */
  #front: Acceptor | undefined;
  /** Loops that stopped accepting after a reload, with connections still open. */
  readonly #retired = new Set<Acceptor>();
  #stopped = false;
  #watchers: FileWatch[] | undefined;
  /** Watches being closed: `done` waits for them. */
  readonly #unwatching = new Set<Promise<void>>();
  #queue: Promise<unknown> = Promise.resolve();
  /** Distinct names the current listener's resolver was asked. */
  #names = 0;

  private constructor(options: TlsAcceptorOptions, served: TlsFiles[]) {
    this.#options = options;
    this.#paths = options.tls.certificates;
    this.#interval = options.tls.interval;
    this.#served = served;
    this.#current = undefined as unknown as Acceptor; // set by start
  }

  /**
   * Checks the files and binds the listener.
   *
   * @throws {Error} `tls.cert PATH: ...` / `tls.key PATH: ...` (`tls.certificates[i].cert
   * PATH: ...`) for bad files, `listen.https ADDR: ...` when the address cannot be bound.
   */
  static async start(options: TlsAcceptorOptions): Promise<TlsAcceptor> {
    const served = await Promise.all(options.tls.certificates.map(loadTls));
    const { addr, hop } = options;
    const a = new TlsAcceptor(options, served);
    const files = options.tls.certificates;
    // bound with reusePort (a new certificate rebinds beside it): check the port first
    const what = options.what ?? "listen.https";
    if (!options.join) bindOrThrow(what, addr, files, () => ensureFree(addr));
    const tlsAddr = hop === undefined ? addr : LOOPBACK;
    a.#current = a.#accept(
      bindOrThrow(what, tlsAddr, files, () => a.#listen(tlsAddr, served, true)),
    );
    if (hop !== undefined) {
      const front = bindOrThrow(what, addr, files, () => Deno.listen({ ...addr, reusePort: true }));
      a.#front = accept(front, (conn) => hop(conn, a.#current.addr), options.onExhausted);
    }
    served.forEach((m, i) => {
      options.log.info(`tls: serving ${describe(m)} from ${at(files[i]!)}.cert ${files[i]!.cert}`);
      a.#check(m, files[i]!, i);
    });
    if (options.tls.watch ?? true) await a.#watch();
    return a;
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#front?.addr ?? this.#current.addr;
  }

  /** The certificates served now, in config order (the first is the default). */
  get certificates(): ServedCertificate[] {
    return this.#served.map((m, i) => ({
      cert: this.#paths[i]!.cert,
      key: this.#paths[i]!.key,
      names: [...m.names],
      subject: m.subject,
      serial: m.serial,
      notAfter: m.notAfter,
    }));
  }

  /** Connections open now, on the current listener and on retired ones. */
  get open(): number {
    let n = this.#current.open;
    for (const r of this.#retired) n += r.open;
    return n;
  }

  /** Settles when every connection, on every listener, has finished (after `stop`). */
  get done(): Promise<void> {
    return Promise.all([
      this.#current.done,
      this.#front?.done,
      ...[...this.#retired].map((r) => r.done),
      ...this.#unwatching,
    ]).then(
      () => {},
    );
  }

  /** Stops accepting and watching; open connections carry on. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unwatch();
    this.#front?.stop();
    this.#current.stop();
  }

  /**
   * Re-reads every certificate and key (from `files`, when the paths changed) and,
   * when they differ from those served, rebinds so that new handshakes use them.
   * All or nothing: when one pair fails, the current certificates keep serving.
   * `files.watch` turns file watching on or off.
   *
   * @returns true when new certificates are now served.
   * @throws {Error} naming the file at fault (see {@linkcode loadTls}).
   */
  reload(files?: WatchedTlsPaths): Promise<boolean> {
    return this.#queued(() => this.#reload(files));
  }

  #queued<T>(run: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  async #reload(files: WatchedTlsPaths | undefined): Promise<boolean> {
    if (this.#stopped) return false;
    const paths = files?.certificates ?? this.#paths;
    const next = await Promise.all(paths.map(loadTls));
    if (this.#stopped) return false;
    const before = this.#served;
    const same = next.length === before.length &&
      next.every((m, i) => m.cert === before[i]!.cert && m.key === before[i]!.key);
    if (same) {
      await this.#retarget(files);
      return false;
    }
    this.#swap(next, paths);
    this.#served = next;
    await this.#retarget(files);
    next.forEach((m, i) => {
      const was = before.find((b) => b.cert === m.cert && b.key === m.key);
      if (was) return;
      this.#options.log.info(
        `tls: certificate reloaded from ${at(paths[i]!)}.cert ${paths[i]!.cert}: now ${
          describe(m)
        }${before[i] ? ` (was serial ${before[i]!.serial})` : ""}; open connections keep theirs`,
      );
      this.#check(m, paths[i]!, i);
    });
    return true;
  }

  // One pair's files changed: re-read that pair alone; a bad file is refused and
  // the pair keeps serving what it served.
  async #reloadPair(watched: TlsPaths): Promise<void> {
    const i = this.#paths.findIndex((p) => p.cert === watched.cert && p.key === watched.key);
    if (this.#stopped || i < 0) return;
    const pair = this.#paths[i]!;
    const served = this.#served[i]!;
    let next: TlsFiles;
    try {
      next = await loadTls(pair);
    } catch (e) {
      this.#options.log.error(
        `tls: certificate reload rejected, ${at(pair)} keeps serving serial ${served.serial}` +
          `${this.#paths.length > 1 ? " (the others are not affected)" : ""}: ` +
          (e as Error).message,
      );
      return;
    }
    if (this.#stopped || this.#paths[i] !== pair) return; // a reload came in between
    if (next.cert === served.cert && next.key === served.key) return;
    const all = this.#served.with(i, next);
    this.#swap(all, this.#paths);
    this.#served = all;
    this.#options.log.info(
      `tls: certificate reloaded from ${at(pair)}.cert ${pair.cert}: now ${describe(next)} ` +
        `(was serial ${served.serial}); open connections keep theirs`,
    );
    this.#check(next, pair, i);
  }

  // Warns about a certificate clients will refuse, or one SNI never picks.
  #check(m: TlsFiles, pair: TlsPaths, i: number): void {
    const log = this.#options.log;
    const wrong = validity(m);
    if (wrong) log.warn(`tls: ${at(pair)}.cert ${pair.cert}: certificate ${wrong}; served anyway`);
    if (m.names.length === 0 && this.#paths.length > 1) {
      log.warn(
        `tls: ${at(pair)}.cert ${pair.cert}: no DNS names in its subjectAltName, so no server ` +
          `name selects it${i === 0 ? " (served as the default)" : ""}`,
      );
    }
  }

  // Binds a listener with `next`, then stops the old loop; its connections go on.
  #swap(next: TlsFiles[], files: readonly TlsPaths[]): void {
    const addr = this.#pinned();
    const old = this.#current;
    let listener: Deno.TlsListener;
    try {
      listener = this.#listen(addr, next, true);
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw tlsError(files, e);
      // no SO_REUSEPORT here: a moment without a listener instead
      old.stop();
      try {
        listener = this.#listen(addr, next, false);
      } catch (e2) {
        try {
          this.#current = this.#accept(this.#listen(addr, this.#served, false));
          this.#retire(old);
        } catch (e3) {
          this.#options.log.error(`tls: ${this.#what} is down: ${(e3 as Error).message}`);
        }
        throw bindError(this.#what, addr, e2);
      }
    }
    this.#current = this.#accept(listener);
    old.stop();
    this.#retire(old);
  }

  #listen(addr: HostPort, served: readonly TlsFiles[], reusePort: boolean): Deno.TlsListener {
    this.#names = 0;
    const alpn = this.#options.alpnProtocols ?? ["h2", "http/1.1"];
    return listenTls(addr, served, { reusePort, alpn }, () => {
      if (++this.#names === (this.#options.sniNames ?? SNI_NAMES_PER_LISTENER)) this.#renew();
    });
  }

  // The resolver was asked too many names: a fresh listener, with a fresh cache.
  #renew(): void {
    this.#queued(() => {
      if (this.#stopped) return Promise.resolve();
      const seen = this.#names;
      this.#swap(this.#served, this.#paths);
      this.#options.log.info(
        `tls: ${seen} distinct server names asked on ${this.#what}: ` +
          "listener renewed to empty the runtime's per-name certificate cache",
      );
      return Promise.resolve();
    }).catch((e) => this.#options.log.error(`tls: renewing the listener failed: ${e.message}`));
  }

  get #what(): string {
    return this.#options.what ?? "listen.https";
  }

  #accept(listener: Deno.TlsListener): Acceptor {
    return accept(listener, this.#options.handle, this.#options.onExhausted);
  }

  #retire(old: Acceptor): void {
    this.#retired.add(old);
    old.done.then(() => this.#retired.delete(old));
  }

  // The address actually bound (port 0 resolved), so a replacement lands on the same port.
  #pinned(): HostPort {
    const hostname = this.#options.hop ? LOOPBACK.hostname : this.#options.addr.hostname;
    return { hostname, port: this.#current.addr.port };
  }

  // Follows new paths, the watch setting and the interval.
  async #retarget(files: WatchedTlsPaths | undefined): Promise<void> {
    if (files === undefined) return;
    const interval = files.interval ?? this.#interval;
    const moved = files.certificates.length !== this.#paths.length ||
      files.certificates.some((p, i) =>
        p.cert !== this.#paths[i]!.cert || p.key !== this.#paths[i]!.key
      ) || interval !== this.#interval;
    const watch = files.watch ?? this.#watchers !== undefined;
    this.#paths = files.certificates;
    this.#interval = interval;
    if (this.#watchers && (moved || !watch)) this.#unwatch();
    if (watch && !this.#watchers && !this.#stopped) await this.#watch();
  }

  // Polls each pair's two files (see FileWatch: it follows symlinks on every look,
  // so a rename over a file, a re-pointed symlink and a Kubernetes `..data` swap are
  // seen like an edit in place). The first look counts as a change: the pair's
  // reload compares what it reads with what is served, so nothing changed in
  // between is missed.
  async #watch(): Promise<void> {
    const pairs = this.#paths;
    this.#watchers = await Promise.all(pairs.map((pair) =>
      FileWatch.start([pair.cert, pair.key], {
        ...(this.#interval === undefined ? {} : { interval: this.#interval }),
        initial: "unknown",
        onChange: () => this.#queued(() => this.#reloadPair(pair)),
      })
    ));
  }

  #unwatch(): void {
    // not awaited here: the watch may be the caller (a reload it started)
    for (const w of this.#watchers ?? []) {
      const closing = w.close();
      this.#unwatching.add(closing);
      closing.then(() => this.#unwatching.delete(closing));
    }
    this.#watchers = undefined;
  }
}

const SNI_RESOLVER = Symbol.for("unstableSniResolver");

// One certificate: served as is. Several: the resolver picks one by SNI; Deno asks
// it once per distinct name (`""`: no SNI) and keeps the answer.
function listenTls(
  addr: HostPort,
  served: readonly TlsFiles[],
  options: { reusePort: boolean; alpn: readonly string[] },
  onName: () => void,
): Deno.TlsListener {
  const base = {
    hostname: addr.hostname,
    port: addr.port,
    transport: "tcp" as const,
    ...(options.alpn.length > 0 ? { alpnProtocols: [...options.alpn] } : {}),
    ...(options.reusePort ? { reusePort: true } : {}),
  };
  if (served.length === 1) {
    return Deno.listenTls({ ...base, cert: served[0]!.cert, key: served[0]!.key });
  }
  const index = new SniIndex(served.map((m) => m.names));
  const pairs = served.map((m) => ({ cert: m.cert, key: m.key }));
  const resolve = (serverName: string) => {
    onName();
    return Promise.resolve(pairs[index.pick(serverName)]!);
  };
  // the symbol is not in Deno's types: the options are cast
  return Deno.listenTls(
    { ...base, [SNI_RESOLVER]: resolve } as unknown as
      & Deno.ListenTlsOptions
      & Deno.TlsCertifiedKeyPem,
  );
}

function bindOrThrow<T>(
  what: string,
  addr: HostPort,
  files: readonly TlsPaths[],
  open: () => T,
): T {
  try {
    return open();
  } catch (e) {
    throw e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.AddrNotAvailable ||
        e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
      ? bindError(what, addr, e)
      : tlsError(files, e);
  }
}

function tlsError(files: readonly TlsPaths[], e: unknown): Error {
  const which = files.map((f) => `${at(f)}.cert ${f.cert}, ${at(f)}.key ${f.key}`).join("; ");
  return new Error(`${which}: rejected by TLS: ${(e as Error).message}`, { cause: e });
}

function at(pair: TlsPaths): string {
  return pair.at ?? "tls";
}

function describe(m: TlsFiles): string {
  return `certificate serial ${m.serial} (${m.subject}, expires ${
    m.notAfter.toISOString().slice(0, 10)
  })`;
}
