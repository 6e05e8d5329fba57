-- Signing keys for access tokens. A key is published in the JWKS from the moment it exists:
-- `next` (published, not yet signing) → `active` (the one key that signs) → `retired` (published
-- until `publish_until`, when every token it signed has expired). Private keys are stored only
-- encrypted (AES-256-GCM under the master key, with the kid as associated data).

CREATE TABLE signing_keys (
  kid               text PRIMARY KEY,
  algorithm         text NOT NULL CHECK (algorithm IN ('EdDSA', 'ES256', 'RS256')),
  public_jwk        jsonb NOT NULL,
  -- nonce (12 bytes) || GCM tag (16 bytes) || ciphertext of the PKCS#8 PEM.
  private_key_enc   bytea NOT NULL,
  state             text NOT NULL CHECK (state IN ('next', 'active', 'retired')),
  created_at        timestamptz NOT NULL,
  activated_at      timestamptz,
  retired_at        timestamptz,
  publish_until     timestamptz,
  CHECK (state <> 'retired' OR publish_until IS NOT NULL)
);

-- At most one key signs and at most one waits to: rotation swaps them in one transaction.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys ((true)) WHERE state = 'next';

-- Every change makes every replica reload its keyring (JWKS, signer, verification keys).
CREATE FUNCTION notify_signing_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'signing-key:' || COALESCE(NEW.kid, OLD.kid));
  RETURN NULL;
END $$;
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON signing_keys
  FOR EACH ROW EXECUTE FUNCTION notify_signing_key_change();
