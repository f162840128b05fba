/**
 * Noticing that files changed, by polling: every `interval` the watched paths are
 * read (following symlinks, as an open would) and their bytes compared with the
 * last ones seen. It sees an in-place edit, a rename over the file, a replaced
 * symlink, and a Kubernetes ConfigMap/Secret volume update (`..data` re-pointed to
 * a new timestamped directory) alike, on any filesystem, with no watch to re-arm
 * and no inotify instance to run out of. Used for the config file and for the TLS
 * certificate and key (see docs/reload.md for why polling and not `Deno.watchFs`).
 *
 * @module
 */
import { sleep } from "../_async.ts";

/** Options for {@linkcode FileWatch}. */
export interface FileWatchOptions {
  /** Time between two looks at the files, in ms. @default {1000} */
  interval?: number;
  /**
   * After a change is seen, the files are read again this long later, until two
   * reads agree: a file being written, or a key written before its certificate,
   * is not acted upon half-way. In ms. @default {200}
   */
  settle?: number;
  /**
   * Called once the files settled after a change; also once on the first look
   * when `initial` is `"unknown"`. Calls never overlap; a rejection is ignored
   * (the callback reports its own errors).
   */
  onChange: () => unknown;
  /**
   * What the files held before the first look: `"read"` reads them now, so only
   * later changes count; `"unknown"` counts the first look as a change (so nothing
   * that happened between loading the files and starting the watch is missed).
   * @default {"read"}
   */
  initial?: "read" | "unknown";
}

/** What one path held: its bytes, or `"missing"`. */
type Seen = Uint8Array | "missing";

/**
 * Polls `paths` and calls `onChange` when their contents change.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { FileWatch } from "./file_watch.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "one");
 * const changed = Promise.withResolvers<void>();
 * const watch = await FileWatch.start([`${dir}/a.txt`], {
 *   interval: 20,
 *   settle: 10,
 *   onChange: () => changed.resolve(),
 * });
 * await Deno.writeTextFile(`${dir}/a.txt`, "two");
 * await changed.promise;
 * await watch.close();
 * assertEquals(watch.changes, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileWatch {
  /** The watched paths. */
  readonly paths: readonly string[];
  readonly #options: FileWatchOptions;
  readonly #ac = new AbortController();
  #seen: Seen[] | undefined;
  #changes = 0;
  #loop: Promise<void> = Promise.resolve();

  private constructor(paths: readonly string[], options: FileWatchOptions) {
    this.paths = paths;
    this.#options = options;
  }

  /**
   * Starts watching `paths` (after a first read when `initial` is `"read"`).
   *
   * @param paths Files to watch; symlinks are followed on every look.
   * @param options When to look and whom to tell.
   * @returns The running watch; stop it with {@linkcode FileWatch.close}.
   */
  static async start(paths: readonly string[], options: FileWatchOptions): Promise<FileWatch> {
    const w = new FileWatch([...paths], options);
    if ((options.initial ?? "read") === "read") w.#seen = await w.#read() ?? [];
    w.#loop = w.#run();
    return w;
  }

  /** Times `onChange` was called. */
  get changes(): number {
    return this.#changes;
  }

  /** Stops polling; resolves once a running `onChange` has finished. */
  async close(): Promise<void> {
    this.#ac.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#ac.signal;
    const interval = this.#options.interval ?? 1000;
    const settle = this.#options.settle ?? 200;
    // an unknown start is looked at right away
    if (this.#seen !== undefined) await sleep(interval, signal);
    while (!signal.aborted) {
      let now = await this.#read();
      if (now !== undefined && (this.#seen === undefined || !same(now, this.#seen))) {
        for (;;) {
          await sleep(settle, signal);
          if (signal.aborted) return;
          const again = await this.#read();
          if (again !== undefined && same(again, now)) break;
          now = again ?? now;
        }
        this.#seen = now;
        this.#changes++;
        try {
          await this.#options.onChange();
        } catch { /* the callback reports its own errors */ }
      }
      await sleep(interval, signal);
    }
  }

  // The files' contents; undefined when a read failed for another reason than a
  // missing file (out of descriptors, say): that look tells nothing.
  async #read(): Promise<Seen[] | undefined> {
    try {
      return await Promise.all(this.paths.map(async (p): Promise<Seen> => {
        try {
          return await Deno.readFile(p);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return "missing";
          throw e;
        }
      }));
    } catch {
      return undefined;
    }
  }
}

function same(a: Seen[], b: Seen[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === "missing" || y === "missing") {
      if (x !== y) return false;
      continue;
    }
    if (x.length !== y.length) return false;
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) return false;
  }
  return a.length === b.length;
}
