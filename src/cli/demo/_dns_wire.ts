/**
 * Just enough of the DNS wire format (RFC 1035, RFC 2782) for the demo responder: decode
 * one question, encode a response with SRV and A records.
 *
 * @module
 */

/** Record type number of an A (IPv4 address) record. */
export const TYPE_A = 1;
/** Record type number of an SRV record (RFC 2782). */
export const TYPE_SRV = 33;
const CLASS_IN = 1;

/** Response code: no error. */
export const RCODE_NOERROR = 0;
/** Response code: the query was malformed. */
export const RCODE_FORMERR = 1;
/** Response code: the name does not exist. */
export const RCODE_NXDOMAIN = 3;
/** Response code: the kind of query is not supported. */
export const RCODE_NOTIMP = 4;

/** The parts of a query the responder needs. */
export interface Query {
  /** Query ID, echoed in the response. */
  id: number;
  /** Opcode and RD bits of the query flags, echoed in the response. */
  flags: number;
  /** Lower-cased, without trailing dot. */
  name: string;
  /** Record type asked for (QTYPE), e.g. {@linkcode TYPE_SRV}. */
  type: number;
  /** Class asked for (QCLASS; 1 is IN). */
  klass: number;
  /** The question section exactly as received (echoed in the response). */
  question: Uint8Array;
}

/** A resource record to encode. */
export type Answer =
  | { name: string; type: typeof TYPE_A; ttl: number; address: string }
  | {
    name: string;
    type: typeof TYPE_SRV;
    ttl: number;
    priority: number;
    weight: number;
    port: number;
    target: string;
  };

/** Decodes the header and the first question. Returns undefined for a packet not worth a reply. */
export function decodeQuery(packet: Uint8Array): Query | { id: number; error: number } | undefined {
  if (packet.length < 12) return undefined;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const id = view.getUint16(0);
  const flags = view.getUint16(2);
  if (flags & 0x8000) return undefined; // A response, not a query.
  if (((flags >> 11) & 0xf) !== 0) return { id, error: RCODE_NOTIMP };
  if (view.getUint16(4) !== 1) return { id, error: RCODE_FORMERR };
  const labels: string[] = [];
  let offset = 12;
  for (;;) {
    const length = packet[offset];
    if (length === undefined || length > 63) return { id, error: RCODE_FORMERR };
    offset++;
    if (length === 0) break;
    if (offset + length > packet.length) return { id, error: RCODE_FORMERR };
    labels.push(new TextDecoder().decode(packet.subarray(offset, offset + length)));
    offset += length;
  }
  if (offset + 4 > packet.length) return { id, error: RCODE_FORMERR };
  return {
    id,
    flags: flags & 0x7900,
    name: labels.join(".").toLowerCase(),
    type: view.getUint16(offset),
    klass: view.getUint16(offset + 2),
    question: packet.slice(12, offset + 4),
  };
}

/** Encodes a response; answers whose name equals the question's point back at it. */
export function encodeResponse(init: {
  id: number;
  flags?: number;
  rcode: number;
  question?: Uint8Array;
  questionName?: string;
  answers?: Answer[];
  additional?: Answer[];
}): Uint8Array {
  const out: number[] = [];
  const u16 = (n: number) => out.push((n >> 8) & 0xff, n & 0xff);
  const answers = init.answers ?? [];
  const additional = init.additional ?? [];
  u16(init.id);
  u16(0x8400 | (init.flags ?? 0) | init.rcode); // QR, AA, echoed opcode and RD.
  u16(init.question ? 1 : 0);
  u16(answers.length);
  u16(0);
  u16(additional.length);
  if (init.question) out.push(...init.question);
  for (const record of [...answers, ...additional]) {
    if (init.question && record.name.toLowerCase() === init.questionName) u16(0xc00c);
    else pushName(out, record.name);
    u16(record.type);
    u16(CLASS_IN);
    u16(record.ttl >>> 16);
    u16(record.ttl & 0xffff);
    if (record.type === TYPE_A) {
      u16(4);
      out.push(...record.address.split(".").map(Number));
    } else {
      const target: number[] = [];
      pushName(target, record.target); // RFC 2782: the target is never compressed.
      u16(6 + target.length);
      u16(record.priority);
      u16(record.weight);
      u16(record.port);
      out.push(...target);
    }
  }
  return new Uint8Array(out);
}

/** Tells whether `s` is an IPv4 address in dotted-quad form. */
export function isIpv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * Checks that `name` can be encoded: labels of 1..63 bytes.
 *
 * @throws {RangeError} Naming the bad name.
 */
export function checkName(name: string): void {
  pushName([], name);
}

function pushName(out: number[], name: string): void {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  for (const label of trimmed === "" ? [] : trimmed.split(".")) {
    const bytes = new TextEncoder().encode(label);
    if (bytes.length === 0 || bytes.length > 63) {
      throw new RangeError(`DNS label must be 1..63 bytes: received "${name}"`);
    }
    out.push(bytes.length, ...bytes);
  }
  out.push(0);
}
