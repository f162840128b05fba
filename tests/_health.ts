/**
 * Helpers shared by the active health check tests.
 *
 * @module
 */
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import {
  delay,
  forEachHead,
  namedResponse,
  type RawServer,
  rawServer,
  writeAllText,
} from "./_http.ts";

/** A backend whose `/healthz` answers `health.status`; other paths get 200 "name path". */
export interface HealthBackend extends RawServer {
  status: number;
  /** Probes received (requests for /healthz). */
  readonly probes: number;
  /** The last probe's request head. */
  readonly lastProbe: string;
  readonly backend: Backend;
}

export function healthBackend(name: string, status = 200): HealthBackend {
  const server = rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      if (head.split(" ")[1] !== "/healthz") {
        return await writeAllText(conn, namedResponse(name, head));
      }
      health.probes++;
      health.lastProbe = head;
      await writeAllText(
        conn,
        `HTTP/1.1 ${health.status} S\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhc`,
      );
      return false;
    })
  );
  const backend = createBackend({ hostname: "127.0.0.1", port: server.port });
  const health = Object.assign(server, { status, probes: 0, lastProbe: "", backend });
  return health;
}

export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for: ${what}`);
    await delay(10);
  }
}
