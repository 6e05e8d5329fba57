import type { CryptoKey, JWK } from "jose";
import type { SigningKeyRecord } from "../domain/signing-key.js";
import { importPrivateKey, importPublicKey, jwkOf } from "./key-material.js";

/** A key tokens may be verified with, while `publishUntil` (ms; undefined = no end yet) lies ahead. */
export interface PublishedKey {
  kid: string;
  algorithm: SigningKeyRecord["algorithm"];
  key: CryptoKey;
  jwk: JWK;
  publishUntil: number | undefined;
}

/** The key this replica signs with. */
export interface Signer {
  kid: string;
  algorithm: SigningKeyRecord["algorithm"];
  key: CryptoKey;
}

/** What a keyring needs: a loader over the store, the master key to open the active private key, and a clock. */
export interface KeyringDeps {
  /** Reads every published signing key from the store. */
  load(): Promise<SigningKeyRecord[]>;
  masterKey: Buffer;
  now: () => number;
  /** Least time between reloads forced by an unknown kid, so garbage tokens cannot hammer the store. */
  unknownKidReloadMs?: number;
  onError(err: unknown, what: string): void;
}

/** The per-replica, in-memory view of the signing keys; verification never touches the store. */
export interface Keyring {
  /** Re-reads the keys; concurrent calls share one read, and a call during a read triggers one more. */
  reload(): Promise<void>;
  /** The key to sign with, or undefined when the active key could not be decrypted. */
  signer(): Signer | undefined;
  /**
   * The published key with this kid. An unknown kid triggers a (throttled) reload first, in case
   * this replica missed a notification; a key past its publication window is never returned.
   */
  verificationKey(kid: string): Promise<PublishedKey | undefined>;
  /** The published key with this kid as this replica knows it now, without a reload (the warm path). */
  knownKey(kid: string): PublishedKey | undefined;
  /** The JWKS document: every key published now. */
  jwks(): { keys: JWK[] };
}

/** Creates the keyring; call `reload()` once before serving. */
export function createKeyring(deps: KeyringDeps): Keyring {
  let published = new Map<string, PublishedKey>();
  let signer: Signer | undefined;
  let inFlight: Promise<void> | undefined;
  let again = false;
  let lastForced = -Infinity;
  const live = (k: PublishedKey) => k.publishUntil === undefined || k.publishUntil > deps.now();

  async function readOnce(): Promise<void> {
    const records = await deps.load();
    const next = new Map<string, PublishedKey>();
    for (const r of records) {
      const known = published.get(r.kid);
      const key = known?.key ?? (await importPublicKey(r));
      next.set(r.kid, { kid: r.kid, algorithm: r.algorithm, key, jwk: jwkOf(r), publishUntil: r.publishUntil?.getTime() });
    }
    const active = records.find((r) => r.state === "active");
    if (active && active.kid !== signer?.kid) {
      try {
        signer = { kid: active.kid, algorithm: active.algorithm, key: await importPrivateKey(active, deps.masterKey) };
      } catch (err) {
        signer = undefined;
        deps.onError(err, "the active signing key cannot be decrypted (wrong TOLLGATE_MASTER_KEY?)");
      }
    } else if (!active) signer = undefined;
    published = next;
  }

  async function reload(): Promise<void> {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          again = false;
          await readOnce();
        } while (again);
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  }

  return {
    reload,
    signer: () => signer,
    async verificationKey(kid) {
      let key = published.get(kid);
      if (!key && deps.now() - lastForced >= (deps.unknownKidReloadMs ?? 5_000)) {
        lastForced = deps.now();
        await reload().catch((err: unknown) => deps.onError(err, "signing keys could not be reloaded"));
        key = published.get(kid);
      }
      return key && live(key) ? key : undefined;
    },
    knownKey(kid) {
      const key = published.get(kid);
      return key && live(key) ? key : undefined;
    },
    jwks: () => ({ keys: [...published.values()].filter(live).map((k) => k.jwk) }),
  };
}
