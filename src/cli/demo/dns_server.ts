/**
 * A minimal authoritative DNS responder over UDP for `main.ts demo`, so discovery can be
 * seen without installing a DNS server. It answers SRV and A queries from an in-memory
 * table; it is not meant for production.
 *
 * @module
 */
import {
  type Answer,
  checkName,
  decodeQuery,
  encodeResponse,
  isIpv4,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  TYPE_A,
  TYPE_SRV,
} from "./_dns_wire.ts";

/** One SRV record served by the demo responder. */
export interface DemoSrvRecord {
  /** E.g. `_http._tcp.app.test`. */
  name: string;
  /** Host name (or IPv4 literal) of the backend. */
  target: string;
  /** Port of the backend. */
  port: number;
  /** SRV priority (lower is preferred). @default {0} */
  priority?: number;
  /** SRV weight. @default {1} */
  weight?: number;
}

/** One A record served by the demo responder. */
export interface DemoARecord {
  /** Host name it answers for, e.g. `b1.app.test`. */
  name: string;
  /** IPv4 address. */
  address: string;
}

/** The table the demo responder serves. */
export interface DemoDnsRecords {
  /** SRV records. @default {[]} */
  srv?: DemoSrvRecord[];
  /** A records. @default {[]} */
  a?: DemoARecord[];
}

/** Options for {@linkcode startDnsServer}. */
export interface DnsServerOptions {
  /** Address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** 0 picks a free port. @default {0} */
  port?: number;
  /** The initial table served. */
  records: DemoDnsRecords;
  /** TTL of every record, in seconds. @default {5} */
  ttl?: number;
  /** Closes the socket; `closed` settles after that. */
  signal: AbortSignal;
}

/** A running demo responder. */
export interface DnsServer {
  /** The UDP port it listens on. */
  port: number;
  /**
   * Replaces the whole table; later queries see the new records.
   *
   * @throws {RangeError} On an invalid record (the table is then left unchanged).
   */
  setRecords(records: DemoDnsRecords): void;
  /** Settles (never rejects) once the socket is closed after `signal` aborts. */
  closed: Promise<void>;
}

interface Entry {
  srv: DemoSrvRecord[];
  a: string[];
}

/** Replies larger than this go without the additional section (no EDNS, no TCP here). */
const MAX_UDP_REPLY = 512;

/**
 * Starts the demo DNS responder. It answers SRV (with the targets' A records in the
 * additional section) and A queries for known names, case-insensitively; other types of a
 * known name get an empty NOERROR answer; unknown names get NXDOMAIN.
 *
 * @param options Address, records and the signal that stops it.
 * @returns The bound port, a way to swap the records, and a promise of its end.
 * @throws {RangeError} On an invalid record.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { startDnsServer } from "./dns_server.ts";
 * const controller = new AbortController();
 * const dns = await startDnsServer({
 *   records: {
 *     srv: [{ name: "_http._tcp.app.test", target: "b1.test", port: 9001, weight: 30 }],
 *     a: [{ name: "b1.test", address: "127.0.0.1" }],
 *   },
 *   signal: controller.signal,
 * });
 * const answer = await Deno.resolveDns("_http._tcp.app.test", "SRV", {
 *   nameServer: { ipAddr: "127.0.0.1", port: dns.port },
 * });
 * assert(answer[0]?.port === 9001);
 * controller.abort();
 * await dns.closed;
 * ```
 */
export function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  try {
    return Promise.resolve(listen(options));
  } catch (error) {
    return Promise.reject(error);
  }
}

function listen(options: DnsServerOptions): DnsServer {
  let table = buildTable(options.records);
  const ttl = options.ttl ?? 5;
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
  });
  const { port } = socket.addr as Deno.NetAddr;
  const { signal } = options;
  const close = () => socket.close();
  if (signal.aborted) close();
  else signal.addEventListener("abort", close, { once: true });
  const closed = serve(socket, signal, (packet) => respond(packet, table, ttl))
    .finally(() => signal.removeEventListener("abort", close));
  return {
    port,
    setRecords(records) {
      table = buildTable(records);
    },
    closed,
  };
}

async function serve(
  socket: Deno.DatagramConn,
  signal: AbortSignal,
  respond: (packet: Uint8Array) => Uint8Array | undefined,
): Promise<void> {
  while (!signal.aborted) {
    let packet: Uint8Array;
    let peer: Deno.Addr;
    try {
      [packet, peer] = await socket.receive();
    } catch (error) {
      if (signal.aborted || error instanceof Deno.errors.BadResource) return;
      continue;
    }
    const reply = respond(packet);
    if (!reply) continue;
    try {
      await socket.send(reply, peer);
    } catch {
      // The client went away; nothing to do for a datagram.
    }
  }
}

function respond(packet: Uint8Array, table: Map<string, Entry>, ttl: number) {
  const query = decodeQuery(packet);
  if (!query) return undefined;
  if ("error" in query) return encodeResponse({ id: query.id, rcode: query.error });
  const entry = table.get(query.name);
  const base = {
    id: query.id,
    flags: query.flags,
    question: query.question,
    questionName: query.name,
  };
  if (!entry) return encodeResponse({ ...base, rcode: RCODE_NXDOMAIN });
  const answers: Answer[] = [];
  const additional: Answer[] = [];
  if (query.type === TYPE_SRV) {
    for (const r of entry.srv) {
      const { port, priority = 0, weight = 1, target } = r;
      answers.push({ name: query.name, type: TYPE_SRV, ttl, port, priority, weight, target });
      for (const address of table.get(normalize(target))?.a ?? []) {
        additional.push({ name: target, type: TYPE_A, ttl, address });
      }
    }
  } else if (query.type === TYPE_A) {
    for (const address of entry.a) answers.push({ name: query.name, type: TYPE_A, ttl, address });
  }
  const full = encodeResponse({ ...base, rcode: RCODE_NOERROR, answers, additional });
  if (full.length <= MAX_UDP_REPLY) return full;
  return encodeResponse({ ...base, rcode: RCODE_NOERROR, answers });
}

function buildTable(records: DemoDnsRecords): Map<string, Entry> {
  const table = new Map<string, Entry>();
  const entry = (name: string) => {
    const key = normalize(name);
    if (key === "") throw new RangeError(`DNS name must not be empty: received "${name}"`);
    checkName(name);
    let e = table.get(key);
    if (!e) table.set(key, e = { srv: [], a: [] });
    return e;
  };
  for (const r of records.srv ?? []) {
    checkUint16("Port", r.port, r.name);
    checkUint16("Priority", r.priority ?? 0, r.name);
    checkUint16("Weight", r.weight ?? 1, r.name);
    checkName(r.target);
    entry(r.name).srv.push({ ...r });
  }
  for (const r of records.a ?? []) {
    if (!isIpv4(r.address)) {
      throw new RangeError(`A record address must be IPv4: received "${r.address}"`);
    }
    entry(r.name).a.push(r.address);
  }
  return table;
}

function checkUint16(what: string, value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new RangeError(`${what} must be 0..65535: received ${value} for ${name}`);
  }
}

function normalize(name: string): string {
  return (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
}
