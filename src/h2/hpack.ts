/**
 * HPACK, the header compression of HTTP/2 (RFC 7541): a decoder for the header
 * blocks a peer sends and an encoder for the ones we send, each holding one
 * direction's dynamic table for the life of a connection.
 *
 * Strings are latin1: each octet is one char 0..255, as `src/http1/fields.ts`
 * reads HTTP/1 heads, so any octet sequence round-trips.
 *
 * @module
 */
import {
  huffmanDecode,
  huffmanDecodedMax,
  huffmanEncode,
  huffmanEncodedLength,
} from "./_huffman.ts";
import { latin1 } from "../http1/fields.ts";

/**
 * A header block that cannot be decoded: an HTTP/2 COMPRESSION_ERROR (connection error).
 *
 * @example
 * ```ts
 * import { assertThrows } from "@std/assert";
 * import { HpackDecoder, HpackError } from "./hpack.ts";
 *
 * // Index 0 is not a valid index.
 * assertThrows(() => new HpackDecoder().decode(new Uint8Array([0x80]), 0, 1, []), HpackError);
 * ```
 */
export class HpackError extends Error {
  /** The error named after its class. */
  override name = "HpackError";
}

/**
 * The decoded header list passed maxHeaderListSize (RFC 9113 §6.5.2 size: name
 * + value + 32 per field). The fields past the limit were not output, but the
 * rest of the block was still read so that the dynamic table stays in step with
 * the peer's: the connection can go on, the stream cannot.
 *
 * @example
 * ```ts
 * import { assertThrows } from "@std/assert";
 * import { HeaderListTooLargeError, HpackDecoder } from "./hpack.ts";
 *
 * // ":method: GET" counts 7 + 3 + 32 = 42 bytes.
 * const decoder = new HpackDecoder({ maxHeaderListSize: 41 });
 * assertThrows(() => decoder.decode(new Uint8Array([0x82]), 0, 1, []), HeaderListTooLargeError);
 * ```
 */
export class HeaderListTooLargeError extends Error {
  /** The error named after its class. */
  override name = "HeaderListTooLargeError";
}

/** The static table (RFC 7541 Appendix A) as name, value pairs; index 1 first. */
// deno-fmt-ignore
const STATIC_TABLE: readonly string[] = [
  ":authority", "",
  ":method", "GET",
  ":method", "POST",
  ":path", "/",
  ":path", "/index.html",
  ":scheme", "http",
  ":scheme", "https",
  ":status", "200",
  ":status", "204",
  ":status", "206",
  ":status", "304",
  ":status", "400",
  ":status", "404",
  ":status", "500",
  "accept-charset", "",
  "accept-encoding", "gzip, deflate",
  "accept-language", "",
  "accept-ranges", "",
  "accept", "",
  "access-control-allow-origin", "",
  "age", "",
  "allow", "",
  "authorization", "",
  "cache-control", "",
  "content-disposition", "",
  "content-encoding", "",
  "content-language", "",
  "content-length", "",
  "content-location", "",
  "content-range", "",
  "content-type", "",
  "cookie", "",
  "date", "",
  "etag", "",
  "expect", "",
  "expires", "",
  "from", "",
  "host", "",
  "if-match", "",
  "if-modified-since", "",
  "if-none-match", "",
  "if-range", "",
  "if-unmodified-since", "",
  "last-modified", "",
  "link", "",
  "location", "",
  "max-forwards", "",
  "proxy-authenticate", "",
  "proxy-authorization", "",
  "range", "",
  "referer", "",
  "refresh", "",
  "retry-after", "",
  "server", "",
  "set-cookie", "",
  "strict-transport-security", "",
  "transfer-encoding", "",
  "user-agent", "",
  "vary", "",
  "via", "",
  "www-authenticate", "",
];
/** Entries in the static table; dynamic table indexes start after it. */
const STATIC_COUNT = STATIC_TABLE.length / 2;
/** Per-entry overhead of the table size (RFC 7541 §4.1), also used for the list size. */
const ENTRY_OVERHEAD = 32;
/** SETTINGS_HEADER_TABLE_SIZE before any SETTINGS frame (RFC 9113 §6.5.2). */
const DEFAULT_TABLE_SIZE = 4096;
/** The largest dynamic table the encoder uses, whatever the peer allows. */
const ENCODER_TABLE_CAP = 4096;
/** Integers past this are a decoding error (no HTTP/2 size or index goes beyond). */
const MAX_INTEGER = 0x7fffffff;
/** Continuation bytes allowed after an integer's prefix. */
const MAX_INTEGER_BYTES = 6;

/** Nothing: the buffer of an encoder between blocks, and a decoder's source between blocks. */
const NO_BYTES = new Uint8Array(0);
/** No entries yet: a dynamic table's rings until its first entry. */
const NO_STRINGS: string[] = [];
// Scratch space shared by every encoder and decoder (each block is encoded or decoded
// in one synchronous call): an idle connection holds no buffer for HPACK.
let encodeBuffer = new Uint8Array(1024);
let huffmanScratch = new Uint8Array(256);
/** Scratch buffers that grew past this are not kept. */
const MAX_KEPT_SCRATCH = 65536;

/** name → first static index with that name. */
const STATIC_NAME_INDEX = new Map<string, number>();
/** name → value → static index of that exact pair. */
const STATIC_EXACT = new Map<string, Map<string, number>>();
for (let i = STATIC_COUNT; i >= 1; i--) {
  const name = STATIC_TABLE[i * 2 - 2]!;
  const value = STATIC_TABLE[i * 2 - 1]!;
  STATIC_NAME_INDEX.set(name, i);
  let values = STATIC_EXACT.get(name);
  if (!values) STATIC_EXACT.set(name, values = new Map());
  values.set(value, i);
}

/** Names whose values the encoder sends as never-indexed literals (RFC 7541 §7.1.3). */
const NEVER_INDEXED = new Set(["authorization", "proxy-authorization", "set-cookie"]);
/** `cookie` values shorter than this are never indexed: short ones are easy to guess. */
const COOKIE_NEVER_INDEXED_BELOW = 20;
/** Names whose values rarely repeat, so the encoder does not spend table space on them. */
const NOT_INDEXED = new Set([
  ":path",
  "age",
  "content-length",
  "etag",
  "if-modified-since",
  "if-none-match",
  "location",
]);

/**
 * A dynamic table (RFC 7541 §2.3.2) as a ring of names and values numbered by
 * insertion: entry `abs` sits at `abs & mask`, the oldest live one is `first`.
 * The rings hold no slot before the first entry and grow by doubling, so a table
 * is no bigger than what it holds (at most twice the entries).
 */
class DynamicTable {
  names: string[] = NO_STRINGS;
  values: string[] = NO_STRINGS;
  mask = -1;
  /** Insertion number of the oldest entry. */
  first = 0;
  /** Insertion number the next entry gets. */
  next = 0;
  /** Sum of entry sizes (name + value + 32). */
  size = 0;
  /** The most `size` may be. */
  max: number;

  constructor(max: number) {
    this.max = max;
  }

  /** Insertion number of 0-based dynamic index `i`, or -1 past the end. */
  abs(i: number): number {
    return i < this.next - this.first ? this.next - 1 - i : -1;
  }

  /** Removes the oldest entry. */
  evict(): void {
    const slot = this.first++ & this.mask;
    this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
    this.names[slot] = "";
    this.values[slot] = "";
  }

  /** Adds an entry that fits in `max` after evictions the caller made. */
  push(name: string, value: string, size: number): void {
    if (this.next - this.first > this.mask) this.#grow();
    const slot = this.next++ & this.mask;
    this.names[slot] = name;
    this.values[slot] = value;
    this.size += size;
  }

  #grow(): void {
    const cap = Math.max(4, (this.mask + 1) * 2);
    const names = new Array<string>(cap).fill("");
    const values = new Array<string>(cap).fill("");
    for (let abs = this.first; abs < this.next; abs++) {
      names[abs & (cap - 1)] = this.names[abs & this.mask]!;
      values[abs & (cap - 1)] = this.values[abs & this.mask]!;
    }
    this.names = names;
    this.values = values;
    this.mask = cap - 1;
  }
}

/** Options of {@linkcode HpackDecoder}. */
export interface HpackDecoderOptions {
  /** Our SETTINGS_HEADER_TABLE_SIZE: the most the peer may size the dynamic table to. @default {4096} */
  maxTableSize?: number;
  /** Stop decoding past this many bytes of header list (name + value + 32 each). @default {65536} */
  maxHeaderListSize?: number;
}

/**
 * Decodes the header blocks one peer sends on one connection, keeping the
 * dynamic table they build. Header blocks must be decoded in the order they
 * arrive, all of them, even for streams being refused.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { HpackDecoder } from "./hpack.ts";
 *
 * // RFC 7541 C.3.1: a GET of http://www.example.com/
 * const block = new Uint8Array([
 *   0x82, 0x86, 0x84, 0x41, 0x0f, ...new TextEncoder().encode("www.example.com"),
 * ]);
 * const out: string[] = [];
 * new HpackDecoder().decode(block, 0, block.length, out);
 * assertEquals(out, [
 *   ":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com",
 * ]);
 * ```
 */
export class HpackDecoder {
  #table: DynamicTable;
  #limit: number;
  #maxList: number;
  /** Read position in the block being decoded. */
  #pos = 0;
  /** The string just read by #span: `#src[#from..#to)` (the block or the shared scratch). */
  #src: Uint8Array = NO_BYTES;
  #from = 0;
  #to = 0;

  /**
   * @param options Table and list size limits.
   * @throws {RangeError} A limit that is not a non-negative integer.
   */
  constructor(options: HpackDecoderOptions = {}) {
    this.#limit = checkSize("maxTableSize", options.maxTableSize ?? DEFAULT_TABLE_SIZE);
    this.#maxList = checkSize("maxHeaderListSize", options.maxHeaderListSize ?? 65536);
    this.#table = new DynamicTable(this.#limit);
  }

  /**
   * Decodes one complete header block (HEADERS + CONTINUATION payloads joined),
   * appending name, value, name, value, ... to `out`. Names come out as sent
   * (the caller checks lowercase). Strings are octets mapped 1:1 to chars
   * 0..255 (latin1).
   *
   * Past `maxHeaderListSize`, no more fields are appended, but the rest of the
   * block is still read and its table insertions made, without materialising
   * strings that no one will see; then {@linkcode HeaderListTooLargeError} is
   * thrown, after which the connection can go on.
   *
   * @param block Holds the header block.
   * @param start Index of the block's first byte in `block`.
   * @param end Index after the block's last byte.
   * @param out Receives the fields, name then value.
   * @throws {HpackError} The block is malformed: the connection must end.
   * @throws {HeaderListTooLargeError} The list passed `maxHeaderListSize`.
   *
   * @example
   * ```ts
   * import { assertEquals } from "@std/assert";
   * import { HpackDecoder } from "./hpack.ts";
   *
   * const decoder = new HpackDecoder();
   * const out: string[] = [];
   * // ":status: 200", then "x-a: b" with incremental indexing, then index 62 (it).
   * const block = new Uint8Array([0x88, 0x40, 3, 0x78, 0x2d, 0x61, 1, 0x62, 0xbe]);
   * decoder.decode(block, 0, block.length, out);
   * assertEquals(out, [":status", "200", "x-a", "b", "x-a", "b"]);
   * ```
   */
  decode(block: Uint8Array, start: number, end: number, out: string[]): void {
    const table = this.#table;
    const maxList = this.#maxList;
    let listSize = 0;
    let over = false;
    let fields = false;
    this.#pos = start;
    while (this.#pos < end) {
      const b = block[this.#pos]!;
      if (b & 0x80) {
        // Indexed field (§6.1).
        const index = this.#int(block, end, 7);
        let name: string;
        let value: string;
        if (index === 0) throw new HpackError("Indexed field has index 0");
        if (index <= STATIC_COUNT) {
          name = STATIC_TABLE[index * 2 - 2]!;
          value = STATIC_TABLE[index * 2 - 1]!;
        } else {
          const abs = table.abs(index - STATIC_COUNT - 1);
          if (abs < 0) throw new HpackError(`Index is past the dynamic table: ${index}`);
          name = table.names[abs & table.mask]!;
          value = table.values[abs & table.mask]!;
        }
        fields = true;
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        if (listSize > maxList) over = true;
        if (!over) out.push(name, value);
        continue;
      }
      if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3).
        if (fields) {
          throw new HpackError("Dynamic table size update after a field");
        }
        const size = this.#int(block, end, 5);
        if (size > this.#limit) {
          throw new HpackError(
            `Dynamic table size update is over SETTINGS_HEADER_TABLE_SIZE: ${size} > ${this.#limit}`,
          );
        }
        table.max = size;
        while (table.size > size) table.evict();
        continue;
      }
      // Literal field: with incremental indexing (§6.2.1), without (§6.2.2), never indexed (§6.2.3).
      const indexing = (b & 0x40) !== 0;
      const index = this.#int(block, end, indexing ? 6 : 4);
      fields = true;
      let name = "";
      let nameLength: number;
      if (index === 0) {
        this.#span(block, end);
        nameLength = this.#to - this.#from;
        if (indexing || !over) name = latin1(this.#src, this.#from, this.#to);
      } else {
        if (index <= STATIC_COUNT) {
          name = STATIC_TABLE[index * 2 - 2]!;
        } else {
          const abs = table.abs(index - STATIC_COUNT - 1);
          if (abs < 0) throw new HpackError(`Index is past the dynamic table: ${index}`);
          name = table.names[abs & table.mask]!;
        }
        nameLength = name.length;
      }
      this.#span(block, end);
      const size = nameLength + (this.#to - this.#from) + ENTRY_OVERHEAD;
      listSize += size;
      if (listSize > maxList) over = true;
      const kept = indexing && size <= table.max;
      const value = !over || kept ? latin1(this.#src, this.#from, this.#to) : "";
      if (indexing) {
        // An entry larger than the table empties it and is not kept (§4.4).
        while (table.size + size > table.max && table.size > 0) table.evict();
        if (kept) table.push(name, value, size);
      }
      if (!over) out.push(name, value);
    }
    this.#src = NO_BYTES; // holds no reference to the block (a read buffer) between blocks
    if (over) {
      throw new HeaderListTooLargeError(
        `Header list is too large: over ${maxList} bytes (${listSize})`,
      );
    }
  }

  /** Reads an integer with an `bits`-bit prefix (§5.1) at #pos. */
  #int(block: Uint8Array, end: number, bits: number): number {
    if (this.#pos >= end) throw new HpackError("Header block ends inside a field");
    const mask = (1 << bits) - 1;
    let value = block[this.#pos++]! & mask;
    if (value < mask) return value;
    let scale = 1;
    for (let n = 0; n < MAX_INTEGER_BYTES; n++) {
      if (this.#pos >= end) throw new HpackError("Header block ends inside an integer");
      const b = block[this.#pos++]!;
      value += (b & 0x7f) * scale;
      if (value > MAX_INTEGER) throw new HpackError(`Integer is too large: over ${MAX_INTEGER}`);
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new HpackError(`Integer is too long: over ${MAX_INTEGER_BYTES} continuation bytes`);
  }

  /** Reads a string literal (§5.2) at #pos into #src[#from..#to), Huffman-decoding it. */
  #span(block: Uint8Array, end: number): void {
    const huffman = this.#pos < end && (block[this.#pos]! & 0x80) !== 0;
    const length = this.#int(block, end, 7);
    const start = this.#pos;
    if (length > end - start) {
      throw new HpackError(
        `String runs past the end of the header block: ${length} > ${end - start}`,
      );
    }
    this.#pos = start + length;
    if (!huffman) {
      this.#src = block;
      this.#from = start;
      this.#to = start + length;
      return;
    }
    const max = huffmanDecodedMax(length);
    let scratch = huffmanScratch;
    if (scratch.length < max) {
      let cap = scratch.length;
      while (cap < max) cap *= 2;
      scratch = new Uint8Array(cap);
      if (cap <= MAX_KEPT_SCRATCH) huffmanScratch = scratch;
    }
    const n = huffmanDecode(block, start, start + length, scratch);
    if (n < 0) throw new HpackError("Huffman string is malformed: EOS inside or bad padding");
    this.#src = scratch;
    this.#from = 0;
    this.#to = n;
  }
}

/** Options of {@linkcode HpackEncoder}. */
export interface HpackEncoderOptions {
  /** The peer's SETTINGS_HEADER_TABLE_SIZE. @default {4096} */
  maxTableSize?: number;
  /** Huffman-encode strings when shorter. @default {true} */
  huffman?: boolean;
}

/**
 * Encodes the header blocks we send on one connection, keeping the dynamic
 * table the peer's decoder mirrors. Blocks must be sent in the order they were
 * encoded. The table is at most 4096 bytes, less if the peer asks.
 *
 * Exact static table matches are sent as indexes; so are fields already in the
 * dynamic table. Other fields go in the table (incremental indexing) unless
 * they rarely repeat (`:path`, `content-length`, `etag`, ...), would take over
 * 3/4 of the table, or are secrets: `authorization`, `proxy-authorization`,
 * `set-cookie` and `cookie` values under 20 chars are never-indexed literals.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { HpackDecoder, HpackEncoder } from "./hpack.ts";
 *
 * const encoder = new HpackEncoder();
 * const decoder = new HpackDecoder();
 * const fields = [":status", "200", "content-type", "text/html", "server", "unload"];
 * for (let i = 0; i < 2; i++) {
 *   const block = encoder.encode(fields);
 *   const out: string[] = [];
 *   decoder.decode(block, 0, block.length, out);
 *   assertEquals(out, fields);
 *   // The second time every field is an index: one byte each.
 *   if (i === 1) assertEquals(block.length, 3);
 * }
 * ```
 */
export class HpackEncoder {
  #table: DynamicTable;
  #huffman: boolean;
  /** A size update must start the next block. */
  #pending = false;
  /** The smallest table size since the last block (§4.2). */
  #pendingMin = Infinity;
  /** name → value → insertion number, for the live dynamic entries (made with the first). */
  #exact: Map<string, Map<string, number>> | undefined;
  /** name → insertion number of the newest live entry with that name (made with the first). */
  #byName: Map<string, number> | undefined;
  /** The shared encode buffer while a block is encoded. */
  #buf = NO_BYTES;
  #pos = 0;

  /**
   * @param options The peer's table size and whether to use Huffman coding.
   * @throws {RangeError} A table size that is not a non-negative integer.
   */
  constructor(options: HpackEncoderOptions = {}) {
    const size = Math.min(
      checkSize("maxTableSize", options.maxTableSize ?? DEFAULT_TABLE_SIZE),
      ENCODER_TABLE_CAP,
    );
    this.#table = new DynamicTable(size);
    this.#huffman = options.huffman ?? true;
    if (size !== DEFAULT_TABLE_SIZE) {
      this.#pending = true;
      this.#pendingMin = size;
    }
  }

  /**
   * The peer changed SETTINGS_HEADER_TABLE_SIZE: the next block starts with a
   * dynamic table size update, and the table is kept within it.
   *
   * @param size The peer's new SETTINGS_HEADER_TABLE_SIZE.
   * @throws {RangeError} A size that is not a non-negative integer.
   *
   * @example
   * ```ts
   * import { assertEquals } from "@std/assert";
   * import { HpackEncoder } from "./hpack.ts";
   *
   * const encoder = new HpackEncoder();
   * encoder.setMaxTableSize(0);
   * // A size update to 0 (0x20), then ":method: GET" (0x82).
   * assertEquals([...encoder.encode([":method", "GET"])], [0x20, 0x82]);
   * ```
   */
  setMaxTableSize(size: number): void {
    const max = Math.min(checkSize("size", size), ENCODER_TABLE_CAP);
    if (max === this.#table.max) return;
    this.#pending = true;
    if (max < this.#pendingMin) this.#pendingMin = max;
    this.#table.max = max;
    while (this.#table.size > max) this.#evict();
  }

  /**
   * Encodes name, value, name, value, ... (names already lowercase) as one
   * header block. Strings are latin1 (chars 0..255).
   *
   * @param fields Names and values, alternating.
   * @returns A view into a buffer shared by all encoders, valid until the next encode call
   * of any encoder (copy it to keep it).
   * @throws {TypeError} A char above 255, or an odd number of strings. The
   * encoder stays usable: its next block starts by emptying the peer's table.
   *
   * @example
   * ```ts
   * import { assertEquals } from "@std/assert";
   * import { HpackEncoder } from "./hpack.ts";
   *
   * // Static table matches are single-byte indexes.
   * const block = new HpackEncoder().encode([":method", "GET", ":scheme", "https", ":path", "/"]);
   * assertEquals([...block], [0x82, 0x87, 0x84]);
   * ```
   */
  encode(fields: readonly string[]): Uint8Array {
    if (fields.length % 2 !== 0) {
      throw new TypeError(`Fields must be name, value pairs: received ${fields.length} strings`);
    }
    this.#pos = 0;
    this.#buf = encodeBuffer;
    if (this.#pending) {
      this.#reserve(12);
      if (this.#pendingMin < this.#table.max) this.#int(0x20, 5, this.#pendingMin);
      this.#int(0x20, 5, this.#table.max);
      this.#pending = false;
      this.#pendingMin = Infinity;
    }
    try {
      for (let i = 0; i < fields.length; i += 2) this.#field(fields[i]!, fields[i + 1]!);
    } catch (e) {
      // Fields before the bad one may have gone into the table, but the peer
      // never sees this block: empty the table, and have the next block tell
      // the peer to empty its own (size 0, then back).
      while (this.#table.size > 0) this.#evict();
      this.#pending = true;
      this.#pendingMin = 0;
      this.#buf = NO_BYTES;
      throw e;
    }
    const buf = this.#buf;
    this.#buf = NO_BYTES;
    if (buf.length <= MAX_KEPT_SCRATCH) encodeBuffer = buf;
    return buf.subarray(0, this.#pos);
  }

  #field(name: string, value: string): void {
    const table = this.#table;
    this.#reserve(24 + name.length + value.length);
    if (
      NEVER_INDEXED.has(name) ||
      (name === "cookie" && value.length < COOKIE_NEVER_INDEXED_BELOW)
    ) {
      this.#literal(0x10, 4, name, value);
      return;
    }
    const exact = STATIC_EXACT.get(name)?.get(value);
    if (exact !== undefined) {
      this.#int(0x80, 7, exact);
      return;
    }
    const abs = this.#exact?.get(name)?.get(value);
    if (abs !== undefined) {
      this.#int(0x80, 7, STATIC_COUNT + this.#table.next - abs);
      return;
    }
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > (table.max * 3) / 4 || NOT_INDEXED.has(name)) {
      this.#literal(0x00, 4, name, value);
      return;
    }
    this.#literal(0x40, 6, name, value);
    while (table.size + size > table.max) this.#evict();
    const abs2 = table.next;
    table.push(name, value, size);
    const byValue = this.#exact ??= new Map();
    let values = byValue.get(name);
    if (!values) byValue.set(name, values = new Map());
    values.set(value, abs2);
    (this.#byName ??= new Map()).set(name, abs2);
  }

  /** Evicts the oldest dynamic entry and drops it from the lookup maps. */
  #evict(): void {
    const abs = this.#table.first;
    const slot = abs & this.#table.mask;
    const name = this.#table.names[slot]!;
    const value = this.#table.values[slot]!;
    this.#table.evict();
    const values = this.#exact?.get(name);
    if (values?.get(value) === abs) {
      values.delete(value);
      if (values.size === 0) this.#exact!.delete(name);
    }
    if (this.#byName?.get(name) === abs) this.#byName!.delete(name);
  }

  /** Writes a literal field with representation `flags` and a `bits`-bit name index prefix. */
  #literal(flags: number, bits: number, name: string, value: string): void {
    let index = STATIC_NAME_INDEX.get(name);
    if (index === undefined) {
      const abs = this.#byName?.get(name);
      if (abs !== undefined) index = STATIC_COUNT + this.#table.next - abs;
    }
    if (index === undefined) {
      this.#int(flags, bits, 0);
      this.#string(name);
    } else {
      this.#int(flags, bits, index);
    }
    this.#string(value);
  }

  /** Writes a string literal (§5.2), Huffman-coded when that is shorter. */
  #string(s: string): void {
    if (this.#huffman) {
      const n = huffmanEncodedLength(s);
      if (n < 0) throw new TypeError(`Header field must be latin1: ${JSON.stringify(s)}`);
      if (n < s.length) {
        this.#int(0x80, 7, n);
        this.#pos = huffmanEncode(s, this.#buf, this.#pos);
        return;
      }
    }
    this.#int(0, 7, s.length);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) throw new TypeError(`Header field must be latin1: ${JSON.stringify(s)}`);
      buf[pos++] = c;
    }
    this.#pos = pos;
  }

  /** Writes integer `value` with a `bits`-bit prefix (§5.1) after the bits of `flags`. */
  #int(flags: number, bits: number, value: number): void {
    const buf = this.#buf;
    const mask = (1 << bits) - 1;
    if (value < mask) {
      buf[this.#pos++] = flags | value;
      return;
    }
    buf[this.#pos++] = flags | mask;
    value -= mask;
    while (value >= 128) {
      buf[this.#pos++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    buf[this.#pos++] = value;
  }

  /** Makes room for `n` more bytes in the output buffer. */
  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#pos + n) cap *= 2;
    const buf = new Uint8Array(cap);
    buf.set(this.#buf.subarray(0, this.#pos));
    this.#buf = buf;
  }
}

function checkSize(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`${what} must be an integer 0..2^32-1: received ${n}`);
  }
  return n;
}
