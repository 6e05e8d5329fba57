/**
 * A small protobuf writer for the answers that repeat on hot paths (an allowed Check, an
 * admitted ConsumeQuota). The generic encoder (`toBinary`) walks the schema by reflection and
 * grows its buffer chunk by chunk; for a 300–500-byte answer that was 4–15 µs of a call.
 * Here the encoder writes the fields it knows straight into a slab, and hands out the written
 * range as a view: no copy, and one slab allocation per ~100 answers instead of a buffer each.
 * Each user is tested to decode to exactly the message the generic path builds.
 *
 * A slab is only ever appended to: an answer handed out is never written over (a full slab is
 * replaced, and answers still referenced keep the old one alive until grpc-js has copied them into
 * its frames). Encoding is synchronous and Node runs one thread of JavaScript, so one writer
 * serves every call: `start()` begins a message, `finish()` hands it out.
 */
export class WireWriter {
  private buf: Buffer;
  /** Where the message being written starts in `buf`. */
  private base = 0;
  private pos = 0;

  /** `slabBytes`: the size of each slab (a message larger than a slab gets a slab of its own). */
  constructor(private readonly slabBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(slabBytes);
  }

  /** Starts a new message (dropping what an unfinished one wrote). */
  start(): this {
    this.pos = this.base;
    return this;
  }

  /** The message written since `start()`: a view of the slab that nothing will write over. */
  finish(): Buffer {
    const out = this.buf.subarray(this.base, this.pos);
    this.base = this.pos;
    return out;
  }

  /** How many bytes were written since `start()`. */
  get length(): number {
    return this.pos - this.base;
  }

  /** The bytes written from `from` (a `length` read earlier) to now, as a buffer of their own (to keep: it holds no slab). */
  copy(from: number): Buffer {
    const out = Buffer.allocUnsafeSlow(this.pos - this.base - from);
    this.buf.copy(out, 0, this.base + from, this.pos);
    return out;
  }

  /** Makes room for `bytes` more; the message moves to a new slab when this one is full. */
  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const written = this.pos - this.base;
    const slab = Buffer.allocUnsafeSlow(Math.max(this.slabBytes, (written + bytes) * 2));
    this.buf.copy(slab, 0, this.base, this.pos);
    this.buf = slab;
    this.base = 0;
    this.pos = written;
  }

  /** An unsigned varint of up to 2^53 − 1 (int64/uint64 fields holding safe integers). */
  varint(n: number): this {
    this.room(10);
    const buf = this.buf;
    while (n > 0x7fffffff) {
      buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    while (n > 0x7f) {
      buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[this.pos++] = n;
    return this;
  }

  tag(field: number, wireType: 0 | 2): this {
    return this.varint(field * 8 + wireType);
  }

  /** A varint field (uint32/uint64/int64 ≥ 0, enum); zero is left out, as proto3 does. */
  uint(field: number, n: number): this {
    return n === 0 ? this : this.tag(field, 0).varint(n);
  }

  /** A bool field; false is left out, as proto3 does. */
  bool(field: number, value: boolean): this {
    return value ? this.tag(field, 0).varint(1) : this;
  }

  /** A string field, written even when empty (map entries need their key and value). */
  string(field: number, text: string): this {
    this.tag(field, 2);
    const n = text.length;
    if (n < 0x80) {
      // Short ASCII (header names and values, limit names) is copied here: cheaper than two native calls.
      this.room(n + 1);
      const buf = this.buf;
      const start = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + i] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = start + n;
        return this;
      }
    }
    const length = Buffer.byteLength(text);
    this.varint(length);
    this.room(length);
    this.pos += this.buf.write(text, this.pos, length, "utf8");
    return this;
  }

  /** Bytes already encoded (a cached sub-message's fields, say), appended as they are. */
  raw(bytes: Uint8Array): this {
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  /** ASCII text as it is, without tag or length (the caller knows it is ASCII, and its length). */
  ascii(text: string): this {
    this.room(text.length);
    const buf = this.buf;
    for (let i = 0; i < text.length; i++) buf[this.pos++] = text.charCodeAt(i);
    return this;
  }

  /** A non-negative safe integer as decimal ASCII digits, without tag or length (`length`: its `decimalLength`, when the caller has it). */
  decimal(n: number, length = decimalLength(n)): this {
    this.room(length);
    const buf = this.buf;
    for (let i = this.pos + length - 1; i >= this.pos; i--) {
      buf[i] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    }
    this.pos += length;
    return this;
  }

  /** A length-delimited field holding `bytes` (an encoded sub-message). */
  bytesField(field: number, bytes: Uint8Array): this {
    return this.tag(field, 2).varint(bytes.length).raw(bytes);
  }

  /** Opens a sub-message field; returns the mark `end()` needs. One byte is kept for the length. */
  begin(field: number): number {
    this.tag(field, 2);
    this.room(1);
    return this.pos++ - this.base; // relative: the message may move to a new slab before `end()`
  }

  /** Closes the sub-message opened at `mark`, writing its length (moving its bytes if the length needs more than one byte). */
  end(relativeMark: number): this {
    const mark = this.base + relativeMark;
    const length = this.pos - mark - 1;
    if (length < 0x80) {
      this.buf[mark] = length;
      return this;
    }
    let extra = 0;
    for (let n = length >>> 7; n > 0; n >>>= 7) extra++;
    this.room(extra + 10); // also covers varint()'s own check below, which must not reallocate mid-move
    const at = this.base + relativeMark; // `room` may have moved the message
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos = at;
    this.varint(length);
    this.pos += length;
    return this;
  }
}

/** Whether every character of `text` is ASCII. */
export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** How many decimal digits `decimal(n)` writes for a non-negative safe integer. */
export function decimalLength(n: number): number {
  let length = 1;
  for (; n >= 10; length++) n = Math.floor(n / 10);
  return length;
}

/** The writer every hot-path encoder shares (see the class comment). */
export const wireWriter = new WireWriter();
