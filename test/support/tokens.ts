import { SignJWT, decodeJwt, decodeProtectedHeader, type JWTPayload } from "jose";
import type { App } from "../../src/app.js";
import { signingKeysRepo } from "../../src/store/signing-keys-repo.js";
import { importPrivateKey } from "../../src/tokens/key-material.js";
import { parseMasterKey } from "../../src/tokens/token-config.js";
import { testEnv } from "./server.js";

/** The master key every test server uses (see testEnv). */
export const TEST_MASTER_KEY = parseMasterKey(testEnv("postgres://x").TOLLGATE_MASTER_KEY, [])!;

/** Header and claims of a compact JWS, without verifying anything. */
export function inspect(token: string): { header: ReturnType<typeof decodeProtectedHeader>; claims: JWTPayload } {
  return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
}

/**
 * Signs arbitrary claims with a real stored signing key (decrypted with the test master key):
 * the way to make validly signed tokens that break one rule at a time.
 */
export async function signWithStoredKey(app: App, kid: string, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const record = (await signingKeysRepo.listKeys(app.pool, new Date(0), true)).find((k) => k.kid === kid);
  if (!record) throw new Error(`no signing key ${kid}`);
  const key = await importPrivateKey(record, TEST_MASTER_KEY);
  return new SignJWT(claims).setProtectedHeader({ alg: record.algorithm, kid, typ: "at+jwt", ...header }).sign(key);
}

/** Replaces one part (0 header, 1 payload, 2 signature) of a compact JWS. */
export function withPart(token: string, index: 0 | 1 | 2, value: string): string {
  const parts = token.split(".");
  parts[index] = value;
  return parts.join(".");
}

/** base64url of a JSON value. */
export function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}
