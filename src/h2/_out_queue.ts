/**
 * A growable byte queue for encoded control frames and header blocks waiting
 * for the connection's writer (frames are queued in the order they are made,
 * which keeps HPACK's dynamic table in step with the wire).
 *
 * @module
 */

const EMPTY = new Uint8Array(0);
const SIZE = 4096;
// Queues' buffers not in use: a queue takes one when a frame is queued and gives it
// back when the writer took its bytes, so an idle connection holds none.
const FREE: Uint8Array[] = [];
const MAX_FREE = 256;

/** Bytes queued for the writer; one per connection. */
export class OutQueue {
  /** The queued bytes are `buf[0..length)`. */
  buf: Uint8Array = EMPTY;
  /** Number of queued bytes. */
  length = 0;

  /** Appends `src[start..end)`. */
  writeBytes(src: Uint8Array, start: number, end: number): void {
    const need = this.length + end - start;
    if (need > this.buf.length) {
      if (this.buf === EMPTY && need <= SIZE) this.buf = FREE.pop() ?? new Uint8Array(SIZE);
      else {
        let size = Math.max(this.buf.length * 2, SIZE);
        while (size < need) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.buf.subarray(0, this.length));
        this.buf = next;
      }
    }
    if (end - start <= 16) {
      for (let i = start, j = this.length; i < end; i++) this.buf[j++] = src[i]!;
    } else this.buf.set(src.subarray(start, end), this.length);
    this.length = need;
  }

  /** Forgets every queued byte; the buffer goes back to the shared free list. */
  clear(): void {
    this.length = 0;
    const buf = this.buf;
    this.buf = EMPTY;
    if (buf.length === SIZE && FREE.length < MAX_FREE) FREE.push(buf);
  }
}
