/**
 * The worker that checks bcrypt passwords off the main thread (see
 * `_bcrypt.ts`): one message `{ id, password, hash }` in, `{ id, ok }` out.
 *
 * @module
 */
import bcrypt from "bcryptjs";

/** One check asked of the worker. */
export interface BcryptJob {
  /** Matches the answer to the question. */
  id: number;
  /** The password as the client sent it. */
  password: string;
  /** The bcrypt hash it is checked against. */
  hash: string;
}

/** The worker's answer. */
export interface BcryptResult {
  /** The job's id. */
  id: number;
  /** True when `password` matches `hash`. */
  ok: boolean;
}

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<BcryptJob>) => void) | null;
  postMessage(m: BcryptResult): void;
};
scope.onmessage = (e) => {
  const { id, password, hash } = e.data;
  let ok = false;
  try {
    ok = bcrypt.compareSync(password, hash);
  } catch { /* a hash bcryptjs refuses matches nothing */ }
  scope.postMessage({ id, ok });
};
