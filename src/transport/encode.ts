import { create, isMessage, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";

/**
 * Marks a handler context whose transport sends a handler's Uint8Array answer as the encoded
 * response (the grpc-js adapter; see `encodeMessage`). Handlers of hot methods check it with
 * `acceptsEncoded` and encode their answer themselves; other transports get messages.
 */
export const ACCEPTS_ENCODED = Symbol("tollgate.acceptsEncoded");

export function acceptsEncoded(ctx: HandlerContext): boolean {
  return (ctx as HandlerContext & { [ACCEPTS_ENCODED]?: boolean })[ACCEPTS_ENCODED] === true;
}

/** Encoded bytes of frozen (immutable, reused) messages, e.g. a warm key's principal or VALID answer. */
const encodedFrozen = new WeakMap<object, Buffer>();

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/**
 * Encodes a response message, reusing the bytes of frozen parts. A frozen message is encoded once;
 * a frozen singular message field (outside a oneof) of an unfrozen message is left out of the
 * encoder's pass and its cached bytes are appended as a length-delimited field. Protobuf fields
 * may appear in any order on the wire, so the result decodes to the same message (tested).
 * Handlers freeze only what they reuse and never mutate afterwards. A handler that encoded its
 * answer itself (see mountOnGrpc's `decoders`) returns the bytes, which pass through.
 */
export function encodeMessage(schema: DescMessage, value: unknown): Buffer {
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength); // encoded by the handler
  if (typeof value === "object" && value !== null && Object.isFrozen(value)) {
    const cached = encodedFrozen.get(value);
    if (cached) return cached;
    const bytes = encodePlain(schema, value);
    encodedFrozen.set(value, bytes);
    return bytes;
  }
  return encodePlain(schema, value);
}

function encodePlain(schema: DescMessage, value: unknown): Buffer {
  const message = (isMessage(value, schema) ? value : create(schema, value as never)) as Message & Record<string, unknown>;
  let rest: (Message & Record<string, unknown>) | undefined;
  let tail: Buffer[] | undefined;
  for (const field of schema.fields) {
    if (field.fieldKind !== "message" || field.oneof) continue;
    const sub = message[field.localName];
    if (typeof sub !== "object" || sub === null || !Object.isFrozen(sub)) continue;
    const bytes = encodeMessage(field.message, sub);
    rest ??= { ...message };
    rest[field.localName] = undefined;
    (tail ??= []).push(Buffer.from([...varint((field.number << 3) | 2), ...varint(bytes.length)]), bytes);
  }
  const head = toBinary(schema, rest ?? message);
  const headBuffer = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  return tail ? Buffer.concat([headBuffer, ...tail]) : headBuffer;
}
