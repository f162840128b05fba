/**
 * The admin listener: `/metrics`, `/status`, `/` (dashboard), `POST /reload`.
 *
 * @module
 */
import type { HostPort } from "../address.ts";
import type { Balancer } from "../balancer.ts";

/** A running admin listener. */
export interface AdminServer {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

/**
 * Starts the admin listener for `lb` on `addr`.
 *
 * @throws {Error} when the address cannot be bound.
 */
export function startAdmin(lb: Balancer, addr: HostPort): AdminServer {
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: addr.hostname,
    port: addr.port,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/reload" && req.method === "POST") {
      const result = await lb.reloadFromFile();
      return Response.json(result, { status: result.ok ? 200 : 400 });
    }
    return new Response("not found\n", { status: 404 });
  });
  return {
    addr: server.addr as Deno.NetAddr,
    async close() {
      ac.abort();
      await server.finished;
    },
  };
}
