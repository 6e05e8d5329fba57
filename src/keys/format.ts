import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

/**
 * API key format, version 1:
 *
 *     <prefix>_<key id: 16 base62>_1<secret: 43 base62><checksum: 6 base62>
 *     sk_live_7Gq2mXw0bKp4Zt9L_1Vx...   (about 75 characters in all)
 *
 * - prefix names the environment (`sk_live`, `sk_test`, or a tenant's own such as `tk_live`);
 * - the key id is public and indexes the row, because argon2 hashes are salted and unsearchable;
 * - `1` is the format version, so the format can change without ambiguity;
 * - the secret carries 43 × log2(62) ≈ 256 bits from the CSPRNG;
 * - the checksum is CRC-32 of everything before it, so a mistyped or random string is rejected
 *   without a database read or an argon2 verification, and secret scanners can recognise leaks.
 */
export const KEY_ID_LENGTH = 16;
export const SECRET_LENGTH = 43;
export const CHECKSUM_LENGTH = 6;
export const FORMAT_VERSION = "1";
/** Longest credential we read at all; anything longer is malformed without further work. */
export const MAX_CREDENTIAL_LENGTH = 4096;

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const KEY_PATTERN = /^([a-z][a-z0-9]*(?:_[a-z0-9]+)*)_([0-9A-Za-z]{16})_1([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

/** The parts of a well-formed key. `secret` is the only part that must stay confidential. */
export interface ParsedKey {
  prefix: string;
  keyId: string;
  secret: string;
  /** The whole key string, normalised. */
  full: string;
}

/** Uniform random base62 string from the CSPRNG (rejection sampling keeps every symbol equally likely). */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function checksum(body: string): string {
  let n = crc32(body);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** Creates a fresh key id (public, indexable). */
export function newKeyId(): string {
  return randomBase62(KEY_ID_LENGTH);
}

/** Builds a complete key string for a key id with a fresh secret. */
export function generateKey(prefix: string, keyId: string = newKeyId()): ParsedKey {
  const secret = randomBase62(SECRET_LENGTH);
  const body = `${prefix}_${keyId}_${FORMAT_VERSION}${secret}`;
  return { prefix, keyId, secret, full: body + checksum(body) };
}

/**
 * Strips the transport wrapping a credential may arrive in: surrounding whitespace and an
 * `Authorization` scheme (`Bearer`, any case). `X-API-Key` values arrive bare.
 */
export function unwrapCredential(raw: string): string {
  // A bare key (the usual X-API-Key value) is returned as it is: ASCII at both ends, no space to
  // trim, and not starting with a "b" that could begin a scheme.
  const first = raw.charCodeAt(0);
  const last = raw.charCodeAt(raw.length - 1);
  if (first > 0x20 && first < 0x7f && (first | 0x20) !== 0x62 && last > 0x20 && last < 0x7f) return raw;
  const trimmed = raw.trim();
  const match = /^bearer(?:\s+(.*))?$/is.exec(trimmed);
  return (match ? (match[1] ?? "") : trimmed).trim();
}

/** Parses a key string; undefined when it is not a well-formed v1 key with a valid checksum. */
export function parseKey(credential: string): ParsedKey | undefined {
  if (credential.length > MAX_CREDENTIAL_LENGTH) return undefined;
  const match = KEY_PATTERN.exec(credential);
  if (!match) return undefined;
  const [, prefix, keyId, secret, sum] = match as unknown as [string, string, string, string, string];
  if (checksum(credential.slice(0, -CHECKSUM_LENGTH)) !== sum) return undefined;
  return { prefix, keyId, secret, full: credential };
}

/** The last four characters of the secret, shown in listings so people can tell keys apart. */
export function hintOf(key: ParsedKey): string {
  return key.secret.slice(-4);
}

/** Key ids as they appear in requests: exactly the public id alphabet and length. */
export function isKeyId(value: string): boolean {
  return value.length === KEY_ID_LENGTH && /^[0-9A-Za-z]+$/.test(value);
}
