/**
 * A small protobuf writer for the answers that repeat on hot paths (an allowed Check, an
 * admitted ConsumeQuota). The generic encoder (`toBinary`) walks the schema by reflection and
 * grows its buffer chunk by chunk; for a 300–500-byte answer that was 4–15 µs of a call.
 * Here the encoder writes the fields it knows into one reused scratch buffer and copies the
 * result out once. Each user is tested to decode to exactly the message the generic path builds.
 *
 * Encoding is synchronous and Node runs one thread of JavaScript, so one scratch buffer serves
 * every call: `start()` claims it, `finish()` returns a copy of what was written.
 */
export class WireWriter {
  private buf = Buffer.allocUnsafe(4096);
  private pos = 0;

  /** Starts a new message in the scratch buffer. */
  start(): this {
    this.pos = 0;
    return this;
  }

  /** The bytes written since `start()`, as a new buffer. */
  finish(): Buffer {
    return this.copy(0);
  }

  /** How many bytes were written since `start()`. */
  get length(): number {
    return this.pos;
  }

  /** The bytes written from `from` (a `length` read earlier) to now, as a new buffer. */
  copy(from: number): Buffer {
    const out = Buffer.allocUnsafe(this.pos - from);
    this.buf.copy(out, 0, from, this.pos);
    return out;
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
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

  /** A length-delimited field holding `bytes` (an encoded sub-message). */
  bytesField(field: number, bytes: Uint8Array): this {
    return this.tag(field, 2).varint(bytes.length).raw(bytes);
  }

  /** Opens a sub-message field; returns the mark `end()` needs. One byte is kept for the length. */
  begin(field: number): number {
    this.tag(field, 2);
    this.room(1);
    return this.pos++;
  }

  /** Closes the sub-message opened at `mark`, writing its length (moving its bytes if the length needs more than one byte). */
  end(mark: number): this {
    const length = this.pos - mark - 1;
    if (length < 0x80) {
      this.buf[mark] = length;
      return this;
    }
    let extra = 0;
    for (let n = length >>> 7; n > 0; n >>>= 7) extra++;
    this.room(extra + 10); // also covers varint()'s own check below, which must not reallocate mid-move
    this.buf.copyWithin(mark + 1 + extra, mark + 1, this.pos);
    this.pos = mark;
    this.varint(length);
    this.pos += length;
    return this;
  }
}

/** The writer every hot-path encoder shares (see the class comment). */
export const wireWriter = new WireWriter();
