/**
 * An HTTPS accept loop whose certificate can be replaced without a restart.
 * Deno cannot swap the certificate of a live `Deno.TlsListener`, so a reload
 * binds a replacement listener on the same address (`reusePort`, so both are
 * bound for a moment; close-then-bind where that is unsupported) and stops the
 * old accept loop: new handshakes get the new certificate, open connections
 * carry on with theirs. Reloads happen on request (SIGHUP) and when the files
 * change (polled by a {@linkcode FileWatch}).
 *
 * @module
 */
import type { HostPort } from "../config/address.ts";
import { accept, type Acceptor, bindError, ensureFree } from "./listener.ts";
import type { Logger } from "../observe/log.ts";
import { loadTls, type TlsFiles, type TlsPaths } from "./tls_files.ts";
import { FileWatch } from "./file_watch.ts";

/**
 * The certificate and key files, whether to watch them (`tls.watch`) and how often
 * to look (`reload.interval`, in ms; default 1000).
 */
export type WatchedTlsPaths = TlsPaths & { watch?: boolean; interval?: number };

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
}

/**
 * The accept loop of `listen.https`, with certificate reloads.
 *
 * @example
 * ```ts ignore
 * const a = await TlsAcceptor.start({ addr, tls: { cert, key }, handle, log });
 * await a.reload(); // after replacing the files: new handshakes use the new certificate
 * a.stop();
 * await a.done;
 * ```
 */
export class TlsAcceptor implements Acceptor {
  readonly #options: TlsAcceptorOptions;
  #files: WatchedTlsPaths;
  #material: TlsFiles;
  #current: Acceptor;
  /** Loops that stopped accepting after a reload, with connections still open. */
  readonly #retired = new Set<Acceptor>();
  #stopped = false;
  #watcher: FileWatch | undefined;
  /** Watches being closed: `done` waits for them. */
  readonly #unwatching = new Set<Promise<void>>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(options: TlsAcceptorOptions, material: TlsFiles, listener: Deno.TlsListener) {
    this.#options = options;
    this.#files = {
      cert: options.tls.cert,
      key: options.tls.key,
      ...(options.tls.interval === undefined ? {} : { interval: options.tls.interval }),
    };
    this.#material = material;
    this.#current = this.#accept(listener);
  }

  /**
   * Checks the files and binds the listener.
   *
   * @throws {Error} `tls.cert PATH: ...` / `tls.key PATH: ...` for bad files,
   * `listen.https ADDR: ...` when the address cannot be bound.
   */
  static async start(options: TlsAcceptorOptions): Promise<TlsAcceptor> {
    const material = await loadTls(options.tls);
    const { addr } = options;
    // bound with reusePort (a new certificate rebinds beside it): check the port first
    if (!options.join) bindOrThrow(addr, options.tls, () => ensureFree(addr));
    const listener = bindOrThrow(addr, options.tls, () => listenTls(addr, material, true));
    const a = new TlsAcceptor(options, material, listener);
    options.log.info(`tls: serving ${describe(material)} from tls.cert ${options.tls.cert}`);
    if (options.tls.watch ?? true) await a.#watch();
    return a;
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#current.addr;
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
    this.#current.stop();
  }

  /**
   * Re-reads the certificate and key (from `files`, when the paths changed) and,
   * when they differ from those served, rebinds so that new handshakes use them.
   * On failure the current certificate keeps serving. `files.watch` turns file
   * watching on or off.
   *
   * @returns true when a new certificate is now served.
   * @throws {Error} naming the file at fault (see {@linkcode loadTls}).
   */
  reload(files: WatchedTlsPaths = this.#files): Promise<boolean> {
    const run = () => this.#reload(files);
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  async #reload(files: WatchedTlsPaths): Promise<boolean> {
    if (this.#stopped) return false;
    const next = await loadTls(files);
    if (this.#stopped) return false;
    if (next.cert === this.#material.cert && next.key === this.#material.key) {
      await this.#retarget(files);
      return false;
    }
    this.#swap(next, files);
    const before = this.#material.serial;
    this.#material = next;
    await this.#retarget(files);
    this.#options.log.info(
      `tls: certificate reloaded from tls.cert ${files.cert}: now ${describe(next)} ` +
        `(was serial ${before}); open connections keep theirs`,
    );
    return true;
  }

  // Binds a listener with `next`, then stops the old loop; its connections go on.
  #swap(next: TlsFiles, files: TlsPaths): void {
    const addr = this.#pinned();
    const old = this.#current;
    let listener: Deno.TlsListener;
    try {
      listener = listenTls(addr, next, true);
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw tlsError(files, e);
      // no SO_REUSEPORT here: a moment without a listener instead
      old.stop();
      try {
        listener = listenTls(addr, next, false);
      } catch (e2) {
        try {
          this.#current = this.#accept(listenTls(addr, this.#material, false));
          this.#retire(old);
        } catch (e3) {
          this.#options.log.error(`tls: listen.https is down: ${(e3 as Error).message}`);
        }
        throw bindError("listen.https", addr, e2);
      }
    }
    this.#current = this.#accept(listener);
    old.stop();
    this.#retire(old);
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
    return { hostname: this.#options.addr.hostname, port: this.#current.addr.port };
  }

  // Follows new paths, the watch setting and the interval.
  async #retarget(files: WatchedTlsPaths): Promise<void> {
    const interval = files.interval ?? this.#files.interval;
    const moved = files.cert !== this.#files.cert || files.key !== this.#files.key ||
      interval !== this.#files.interval;
    const watch = files.watch ?? this.#watcher !== undefined;
    this.#files = {
      cert: files.cert,
      key: files.key,
      ...(interval === undefined ? {} : { interval }),
    };
    if (this.#watcher && (moved || !watch)) this.#unwatch();
    if (watch && !this.#watcher && !this.#stopped) await this.#watch();
  }

  // Polls the two files (see FileWatch: it follows symlinks on every look, so a
  // rename over a file, a re-pointed symlink and a Kubernetes `..data` swap are seen
  // like an edit in place). The first look counts as a change: reload() compares
  // what it reads with what is served, so nothing changed in between is missed.
  async #watch(): Promise<void> {
    this.#watcher = await FileWatch.start([this.#files.cert, this.#files.key], {
      ...(this.#files.interval === undefined ? {} : { interval: this.#files.interval }),
      initial: "unknown",
      onChange: () => this.#changed(),
    });
  }

  #unwatch(): void {
    // not awaited here: the watch may be the caller (a reload it started)
    const closing = this.#watcher?.close();
    this.#watcher = undefined;
    if (closing === undefined) return;
    this.#unwatching.add(closing);
    closing.then(() => this.#unwatching.delete(closing));
  }

  async #changed(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.reload();
    } catch (e) {
      this.#options.log.error(
        `tls: certificate reload rejected, still serving serial ${this.#material.serial}: ` +
          (e as Error).message,
      );
    }
  }
}

function listenTls(addr: HostPort, m: TlsFiles, reusePort: boolean): Deno.TlsListener {
  return Deno.listenTls({
    hostname: addr.hostname,
    port: addr.port,
    transport: "tcp",
    cert: m.cert,
    key: m.key,
    alpnProtocols: ["h2", "http/1.1"],
    ...(reusePort ? { reusePort: true } : {}),
  });
}

function bindOrThrow<T>(addr: HostPort, files: TlsPaths, open: () => T): T {
  try {
    return open();
  } catch (e) {
    throw e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.AddrNotAvailable ||
        e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
      ? bindError("listen.https", addr, e)
      : tlsError(files, e);
  }
}

function tlsError(files: TlsPaths, e: unknown): Error {
  return new Error(
    `tls.cert ${files.cert}, tls.key ${files.key}: rejected by TLS: ${(e as Error).message}`,
    { cause: e },
  );
}

function describe(m: TlsFiles): string {
  return `certificate serial ${m.serial} (${m.subject}, expires ${
    m.notAfter.toISOString().slice(0, 10)
  })`;
}
