/** Lifecycle of a signing key: published before it signs, published after it stops signing. */
export type SigningKeyState = "next" | "active" | "retired";

/** A stored signing key. `privateKeyEnc` is ciphertext under the master key, never a usable key. */
export interface SigningKeyRecord {
  /** RFC 7638 JWK thumbprint of the public key. */
  kid: string;
  algorithm: "EdDSA" | "ES256" | "RS256";
  /** The public key as a JWK (no private members). */
  publicJwk: Record<string, unknown>;
  privateKeyEnc: Buffer;
  state: SigningKeyState;
  createdAt: Date;
  activatedAt: Date | null;
  retiredAt: Date | null;
  /** For a retired key: the end of its publication, after every token it signed has expired. */
  publishUntil: Date | null;
}

/** A signing key about to be stored. */
export type NewSigningKey = Pick<SigningKeyRecord, "kid" | "algorithm" | "publicJwk" | "privateKeyEnc">;
