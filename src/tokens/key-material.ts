import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from "jose";
import type { NewSigningKey, SigningKeyRecord } from "../domain/signing-key.js";
import type { SigningAlgorithm } from "./token-config.js";

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Encrypts a private key for storage with AES-256-GCM under the master key. The kid is the
 * associated data, so a ciphertext moved to another row fails to decrypt instead of silently
 * signing under the wrong kid.
 */
export function sealPrivateKey(masterKey: Buffer, kid: string, pem: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", masterKey, nonce).setAAD(Buffer.from(kid, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(pem, "utf8"), cipher.final()]);
  return Buffer.concat([nonce, cipher.getAuthTag(), ciphertext]);
}

/** Decrypts a stored private key; throws when the master key is wrong or the ciphertext was altered. */
export function openPrivateKey(masterKey: Buffer, kid: string, sealed: Buffer): string {
  const decipher = createDecipheriv("aes-256-gcm", masterKey, sealed.subarray(0, NONCE_BYTES)).setAAD(Buffer.from(kid, "utf8"));
  decipher.setAuthTag(sealed.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString("utf8");
}

/**
 * Generates a key pair for `algorithm` (Ed25519 for EdDSA, P-256 for ES256, 2048-bit RSA for
 * RS256). The kid is the RFC 7638 thumbprint of the public JWK, so it is derived, unique and
 * checkable by anyone holding the JWKS.
 */
export async function generateSigningKey(algorithm: SigningAlgorithm, masterKey: Buffer): Promise<NewSigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(algorithm, { extractable: true, ...(algorithm === "RS256" ? { modulusLength: 2048 } : {}) });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  const pem = await exportPKCS8(privateKey);
  return { kid, algorithm, publicJwk: { ...jwk }, privateKeyEnc: sealPrivateKey(masterKey, kid, pem) };
}

/** The private key of a stored signing key, ready to sign. */
export async function importPrivateKey(record: SigningKeyRecord, masterKey: Buffer): Promise<CryptoKey> {
  return importPKCS8(openPrivateKey(masterKey, record.kid, record.privateKeyEnc), record.algorithm);
}

/** The public key of a stored signing key, ready to verify. */
export async function importPublicKey(record: SigningKeyRecord): Promise<CryptoKey> {
  return (await importJWK(record.publicJwk as JWK, record.algorithm)) as CryptoKey;
}

/** The JWKS entry of a key: public members only, with `kid`, `alg` and `use`. */
export function jwkOf(record: SigningKeyRecord): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicMembers } = record.publicJwk as JWK;
  return { ...publicMembers, kid: record.kid, alg: record.algorithm, use: "sig" };
}
