/**
 * bcrypt checks off the main thread: a full check at a realistic cost (10-12)
 * takes tens of milliseconds of CPU, which on the event loop would stall every
 * other connection. The checks run one after another in a Worker (bcryptjs,
 * pure JavaScript, so it needs no permission beyond README's), started on the
 * first check and ended by `close()` once the checks in progress are done.
 *
 * @module
 */
import type { BcryptJob, BcryptResult } from "./_bcrypt_worker.ts";

/**
 * A Worker that checks passwords against bcrypt hashes.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BcryptWorker } from "./_bcrypt.ts";
 * // htpasswd -nbB -C 4 ann secret
 * const hash = "$2y$04$X7z7hh0dzC8B9rostaEIT.xkPvH2Fnqlzw9eAyyJ1HEyPXx9k3aO.";
 * const w = new BcryptWorker();
 * assertEquals(await w.verify("secret", hash), true);
 * assertEquals(await w.verify("wrong", hash), false);
 * w.close();
 * ```
 */
export class BcryptWorker {
  #worker: Worker | undefined;
  #next = 0;
  readonly #waiting = new Map<number, (ok: boolean) => void>();
  #closing = false;

  /** Checks waiting or running now. */
  get pending(): number {
    return this.#waiting.size;
  }

  /**
   * True when `password` matches `hash`; false too when the worker failed.
   *
   * @param password The password as sent.
   * @param hash A bcrypt hash (`$2y$`, `$2a$`, `$2b$`).
   */
  verify(password: string, hash: string): Promise<boolean> {
    const id = this.#next++;
    const job: BcryptJob = { id, password, hash };
    return new Promise<boolean>((resolve) => {
      this.#waiting.set(id, resolve);
      this.#start().postMessage(job);
    });
  }

  /** Ends the worker once the checks in progress are answered. */
  close(): void {
    this.#closing = true;
    if (this.#waiting.size === 0) this.#stop();
  }

  #start(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const w = new Worker(new URL("./_bcrypt_worker.ts", import.meta.url), { type: "module" });
    w.onmessage = (e: MessageEvent<BcryptResult>) => {
      const resolve = this.#waiting.get(e.data.id);
      this.#waiting.delete(e.data.id);
      resolve?.(e.data.ok);
      if (this.#closing && this.#waiting.size === 0) this.#stop();
    };
    w.onerror = (e) => {
      e.preventDefault();
      this.#fail();
    };
    this.#worker = w;
    return w;
  }

  // The worker died: its checks fail (the client gets 401 and may try again).
  #fail(): void {
    this.#stop();
    for (const resolve of this.#waiting.values()) resolve(false);
    this.#waiting.clear();
  }

  #stop(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}
