import { hash } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type { KeyRecord } from "../domain/key.js";
import { MAX_CREDENTIAL_LENGTH, parseKey, unwrapCredential, type ParsedKey } from "./format.js";
import type { SecretHasher } from "./hasher.js";
import { keyStatus, type KeyStatusCode } from "./key-status.js";
import type { MaybePromise } from "../domain/maybe-promise.js";
import { REFRESH_AHEAD_AT, SingleFlight, TtlCache } from "./ttl-cache.js";

/** Every answer Authenticate can give for an API key. */
export type AuthCode = "MISSING_CREDENTIAL" | "MALFORMED_CREDENTIAL" | "INVALID_API_KEY" | KeyStatusCode;

/** The outcome of verifying a credential. `key` is set whenever the secret was proven. */
export interface Verification {
  code: AuthCode;
  key?: KeyRecord;
}

export interface VerifierDeps {
  /** Loads a key row by id; throws a TollgateError (UNAVAILABLE) when the store is down. */
  loadKey(keyId: string): Promise<KeyRecord | undefined>;
  /** Loads many key rows in one statement (refresh ahead); absent ids are missing from the answer. */
  loadKeys(keyIds: readonly string[]): Promise<KeyRecord[]>;
  hasher: SecretHasher;
  pepper: Buffer;
  now: () => number;
  ttlMs: number;
  staleMs: number;
  maxEntries: number;
  negativeTtlMs: number;
  failedSecretsPerMinute: number;
  /** Replace a weak hash after a successful verify (best effort). */
  rehash?(key: KeyRecord, secret: string): void;
  onCache?(result: "hit" | "miss" | "stale" | "negative" | "throttled" | "refresh_ahead"): void;
}

/** A verified presented key: the row as last read, and when it was last confirmed fresh. */
interface Verified {
  key: KeyRecord;
  refreshedAt: number;
}

/** The API-key verifier with its caches. Create one per process. */
export interface KeyVerifier {
  /**
   * Verifies a presented key. A warm key (cached and fresh) is answered synchronously, without a
   * promise, so hot paths can skip a microtask hop; everything else returns a promise.
   */
  verify(rawCredential: string, clientIp: string): MaybePromise<Verification>;
  /**
   * The current row of a key by id, for callers that authenticated the key themselves (Authorize
   * or ConsumeQuota with `key_id`). Cached for `ttlMs`, evicted by the same invalidations;
   * undefined for an unknown id. Throws UNAVAILABLE when the store is down and nothing is cached.
   */
  lookup(keyId: string): MaybePromise<KeyRecord | undefined>;
  /** Forget everything cached about one key (called on NOTIFY). */
  invalidate(keyId: string): void;
  /** Forget everything (called when notifications may have been missed). */
  invalidateAll(): void;
}

/**
 * Creates the verifier implementing DESIGN "Verification": checksum reject; a verified-key cache
 * keyed by SHA-256(pepper ‖ key) so that no cache holds a usable secret; a negative cache of
 * unknown key ids; single-flight argon2 on the thread pool; a per-key-id limit on failed secrets;
 * then status checks. A cached key is re-read after `ttlMs`; while the store is down it keeps
 * working until `ttlMs + staleMs`, after which the call fails as UNAVAILABLE.
 */
export function createKeyVerifier(deps: VerifierDeps): KeyVerifier {
  const verified = new TtlCache<string, Verified>(deps.maxEntries, deps.now);
  const digestsByKey = new Map<string, Set<string>>();
  const unknownIds = new TtlCache<string, true>(deps.maxEntries, deps.now);
  const failures = new TtlCache<string, number>(deps.maxEntries, deps.now);
  const flights = new SingleFlight<string, Verification>();
  // Verifications under way per key id. They count against the failed-secret limit, so a burst of
  // concurrent wrong secrets cannot start more argon2 runs than the limit allows before the first fails.
  const inFlight = new Map<string, number>();
  const refreshes = new SingleFlight<string, KeyRecord | undefined>();
  const byId = new TtlCache<string, { key: KeyRecord | undefined; loadedAt: number }>(deps.maxEntries, deps.now);
  // Bumped on invalidation, so that work started before a change cannot cache pre-change data.
  const generations = new Map<string, number>();
  const generationOf = (keyId: string) => generations.get(keyId) ?? 0;
  const hardTtl = deps.ttlMs + deps.staleMs;
  // Refresh ahead (REFRESH_AHEAD_AT): before, a key's first call after every TTL waited on a
  // re-read of its row, and with 10,000 busy keys the re-reads of one minute came in a burst.
  const aheadMs = deps.ttlMs * REFRESH_AHEAD_AT;
  // The cache key is SHA-256(pepper ‖ key): keyed, so the cache never holds a usable secret or a
  // digest an outsider could precompute. HMAC's second pass guards against length extension, which
  // cannot matter for a private cache key, and costs ~1 µs more per call (measured).
  const pepper = deps.pepper.toString("latin1");

  function remember(digest: string, key: KeyRecord, refreshedAt: number): void {
    verified.set(digest, { key, refreshedAt }, hardTtl);
    let digests = digestsByKey.get(key.keyId);
    if (!digests) digestsByKey.set(key.keyId, (digests = new Set()));
    digests.add(digest);
  }

  /**
   * The record to keep after re-reading a row: the cached one when nothing changed, so that what is
   * memoized per record (answers, principals, encoded bytes, quota subjects) stays valid.
   */
  function kept(cached: KeyRecord | undefined, fresh: KeyRecord | undefined): KeyRecord | undefined {
    return cached && fresh && isDeepStrictEqual(cached, fresh) ? cached : fresh;
  }

  // Refresh ahead in batches: the ids due for a re-read are collected for AHEAD_DELAY_MS and read
  // AHEAD_BATCH at a time in one statement each, so 10,000 keys in use cost ~20 statements a TTL
  // rather than 10,000. An id is never queued twice; the generation at queueing decides, as in `load`.
  const aheadQueue = new Map<string, number>();
  const aheadInFlight = new Set<string>();
  let aheadTimer: NodeJS.Timeout | undefined;
  const AHEAD_DELAY_MS = 20;
  const AHEAD_BATCH = 500;

  function refreshAhead(keyId: string): void {
    if (aheadQueue.has(keyId) || aheadInFlight.has(keyId)) return;
    deps.onCache?.("refresh_ahead");
    aheadQueue.set(keyId, generationOf(keyId));
    aheadTimer ??= setTimeout(() => void readAhead(), AHEAD_DELAY_MS).unref();
  }

  async function readAhead(): Promise<void> {
    aheadTimer = undefined;
    const due = [...aheadQueue];
    aheadQueue.clear();
    for (const [keyId] of due) aheadInFlight.add(keyId);
    for (let i = 0; i < due.length; i += AHEAD_BATCH) {
      const batch = due.slice(i, i + AHEAD_BATCH);
      const ids = batch.map(([keyId]) => keyId);
      try {
        const byKeyId = new Map((await deps.loadKeys(ids)).map((k) => [k.keyId, k]));
        for (const [keyId, generation] of batch) if (generation === generationOf(keyId)) applyFresh(keyId, byKeyId.get(keyId));
      } catch {
        // A failed read changes nothing: entries serve until their TTL, then the synchronous refresh and its stale window decide.
      } finally {
        for (const id of ids) aheadInFlight.delete(id);
      }
    }
  }

  /** Puts a re-read row in place of the cached ones (verified digests and by-id), keeping unchanged records. */
  function applyFresh(keyId: string, fresh: KeyRecord | undefined): void {
    const now = deps.now();
    const byIdEntry = byId.get(keyId);
    if (byIdEntry) byId.set(keyId, { key: kept(byIdEntry.key, fresh), loadedAt: now }, fresh ? hardTtl : deps.negativeTtlMs);
    for (const digest of digestsByKey.get(keyId) ?? []) {
      const entry = verified.get(digest);
      if (!entry) continue;
      if (!fresh || fresh.secretHash !== entry.key.secretHash) verified.delete(digest); // the next call verifies in full
      else remember(digest, kept(entry.key, fresh)!, now);
    }
  }

  // A key record's VALID answer is one frozen object: a warm key allocates no answer.
  const validAnswers = new WeakMap<KeyRecord, Verification>();
  function decide(key: KeyRecord, clientIp: string): Verification {
    const code = keyStatus(key, deps.now(), clientIp);
    if (code !== "VALID") return { code, key };
    let answer = validAnswers.get(key);
    if (!answer) validAnswers.set(key, (answer = Object.freeze({ code, key })));
    return answer;
  }

  async function fullVerify(parsed: ParsedKey, digest: string, clientIp: string): Promise<Verification> {
    const outcome = await flights.run(digest, async (): Promise<Verification> => {
      inFlight.set(parsed.keyId, (inFlight.get(parsed.keyId) ?? 0) + 1);
      try {
        return await verifyOnce(parsed, digest);
      } finally {
        const left = (inFlight.get(parsed.keyId) ?? 1) - 1;
        if (left > 0) inFlight.set(parsed.keyId, left);
        else inFlight.delete(parsed.keyId);
      }
    });
    return outcome.key ? decide(outcome.key, clientIp) : outcome;
  }

  /** Loads the row and runs argon2 once; records a failure against the key id on a wrong secret. */
  async function verifyOnce(parsed: ParsedKey, digest: string): Promise<Verification> {
    const generation = generationOf(parsed.keyId);
    const key = await deps.loadKey(parsed.keyId);
    if (!key || key.prefix !== parsed.prefix) {
      if (!key) unknownIds.set(parsed.keyId, true, deps.negativeTtlMs);
      return { code: "INVALID_API_KEY" };
    }
    const ok = await deps.hasher.verify(key.secretHash, parsed.secret);
    if (!ok) {
      failures.set(parsed.keyId, (failures.get(parsed.keyId) ?? 0) + 1, 60_000);
      return { code: "INVALID_API_KEY" };
    }
    if (generation === generationOf(parsed.keyId)) remember(digest, key, deps.now());
    if (deps.hasher.needsRehash(key.secretHash)) deps.rehash?.(key, parsed.secret);
    return { code: "VALID", key };
  }

  async function refresh(entry: Verified, digest: string, clientIp: string, parsed: ParsedKey): Promise<Verification> {
    const keyId = entry.key.keyId;
    const generation = generationOf(keyId);
    let fresh: KeyRecord | undefined;
    try {
      fresh = await refreshes.run(keyId, () => deps.loadKey(keyId));
    } catch (err) {
      if (deps.now() - entry.refreshedAt < hardTtl) {
        deps.onCache?.("stale");
        return decide(entry.key, clientIp);
      }
      throw err;
    }
    if (!fresh || fresh.secretHash !== entry.key.secretHash) {
      verified.delete(digest);
      return fullVerify(parsed, digest, clientIp);
    }
    const record = kept(entry.key, fresh)!;
    if (generation === generationOf(keyId)) remember(digest, record, deps.now());
    return decide(record, clientIp);
  }

  /** Reads a key by id into the by-id cache; while the store is down, a stale entry still answers. */
  async function load(keyId: string, entry: { key: KeyRecord | undefined; loadedAt: number } | undefined): Promise<KeyRecord | undefined> {
    const generation = generationOf(keyId);
    try {
      const key = kept(entry?.key, await refreshes.run(keyId, () => deps.loadKey(keyId)));
      if (generation === generationOf(keyId)) byId.set(keyId, { key, loadedAt: deps.now() }, key ? hardTtl : deps.negativeTtlMs);
      return key;
    } catch (err) {
      if (entry) return entry.key; // still inside the stale window (the cache's own expiry)
      throw err;
    }
  }

  return {
    verify(rawCredential, clientIp) {
      const credential = unwrapCredential(rawCredential);
      if (credential === "") return { code: "MISSING_CREDENTIAL" };
      if (credential.length > MAX_CREDENTIAL_LENGTH) return { code: "MALFORMED_CREDENTIAL" };
      // The digest comes first: a cached entry exists only for this exact string, which parsed
      // (checksum included) when it was verified, so a warm key skips the parse.
      const digest = hash("sha256", pepper + credential, "base64");
      const entry = verified.get(digest);
      if (entry) {
        const age = deps.now() - entry.refreshedAt;
        if (age < deps.ttlMs) {
          if (age >= aheadMs) refreshAhead(entry.key.keyId);
          deps.onCache?.("hit");
          return decide(entry.key, clientIp);
        }
      }
      const parsed = parseKey(credential);
      if (!parsed) return { code: "MALFORMED_CREDENTIAL" };
      if (entry) return refresh(entry, digest, clientIp, parsed);
      if (unknownIds.get(parsed.keyId)) {
        deps.onCache?.("negative");
        return { code: "INVALID_API_KEY" };
      }
      // Joining a verification already under way for this exact key costs nothing, so it is never throttled.
      if (!flights.has(digest) && (failures.get(parsed.keyId) ?? 0) + (inFlight.get(parsed.keyId) ?? 0) >= deps.failedSecretsPerMinute) {
        deps.onCache?.("throttled");
        return { code: "INVALID_API_KEY" };
      }
      deps.onCache?.("miss");
      return fullVerify(parsed, digest, clientIp);
    },
    lookup(keyId) {
      const entry = byId.get(keyId);
      if (entry) {
        const age = deps.now() - entry.loadedAt;
        if (age < deps.ttlMs) {
          // Warm: no promise. A known key near its TTL is re-read in the background (see aheadMs).
          if (age >= aheadMs && entry.key) refreshAhead(keyId);
          return entry.key;
        }
      }
      return load(keyId, entry);
    },
    invalidate(keyId) {
      byId.delete(keyId);
      generations.set(keyId, generationOf(keyId) + 1);
      unknownIds.delete(keyId);
      for (const digest of digestsByKey.get(keyId) ?? []) verified.delete(digest);
      digestsByKey.delete(keyId);
    },
    invalidateAll() {
      for (const keyId of digestsByKey.keys()) generations.set(keyId, generationOf(keyId) + 1);
      verified.clear();
      byId.clear();
      unknownIds.clear();
      digestsByKey.clear();
    },
  };
}
