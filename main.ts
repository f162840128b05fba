/**
 * unload: an HTTP/1.1 and HTTP/2 (gRPC) load balancer for Deno with DNS SRV discovery.
 *
 * ```sh
 * deno run --allow-net --allow-read main.ts run --config unload.yaml
 * ```
 *
 * @module
 */
import { main } from "./src/cli/cli.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
