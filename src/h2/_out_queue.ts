/**
 * A growable byte queue for encoded control frames and header blocks waiting
 * for the connection's writer (frames are queued in the order they are made,
 * which keeps HPACK's dynamic table in step with the wire).
 *
 * @module
 */

/** Bytes queued for the writer; one per connection, reused. */
export class OutQueue {
  /** The queued bytes are `buf[0..length)`. */
  buf: Uint8Array;
  /** Number of queued bytes. */
  length = 0;

  /** Starts with `size` bytes of room. */
  constructor(size = 1024) {
    this.buf = new Uint8Array(size);
  }

  /** Appends `src[start..end)`. */
  writeBytes(src: Uint8Array, start: number, end: number): void {
    const need = this.length + end - start;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
    }
    if (end - start <= 16) {
      for (let i = start, j = this.length; i < end; i++) this.buf[j++] = src[i]!;
    } else this.buf.set(src.subarray(start, end), this.length);
    this.length = need;
  }

  /** Forgets every queued byte (keeping a grown buffer only up to 64 KiB). */
  clear(): void {
    this.length = 0;
    if (this.buf.length > 65536) this.buf = new Uint8Array(1024);
  }
}
