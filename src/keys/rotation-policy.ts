import type { KeyRecord } from "../domain/key.js";
import type { RotationPolicyRecord } from "../store/rotation-repo.js";

/**
 * The strictest maximum age (ms) that applies to a key of `tenantId` on `plan`, or undefined when no
 * policy applies. A policy applies when its tenant is the key's or null (every tenant) and its plan
 * is the key's or null (every plan). Strictest wins, so a tenant-level policy can tighten but never
 * loosen one set for every tenant. `listRotationDue` in the store restates this rule in SQL.
 */
export function effectiveMaxAgeMs(policies: readonly RotationPolicyRecord[], tenantId: string, plan: string): number | undefined {
  let best: number | undefined;
  for (const p of policies) {
    if ((p.tenantId === null || p.tenantId === tenantId) && (p.plan === null || p.plan === plan)) {
      const ms = p.maxAgeSeconds * 1000;
      if (best === undefined || ms < best) best = ms;
    }
  }
  return best;
}

/**
 * Whether a key should be rotated now: it is older than `maxAgeMs` and nobody has rotated it yet.
 * A key that already has a successor (it is in, or past, its grace period) is not "due": the
 * signal for it is `rotation_pending`. Age is measured from `createdAt`, so a successor starts young.
 */
export function isRotationDue(key: Pick<KeyRecord, "createdAt" | "successorKeyId">, nowMs: number, maxAgeMs: number | undefined): boolean {
  if (maxAgeMs === undefined || key.successorKeyId !== null) return false;
  return nowMs - key.createdAt.getTime() >= maxAgeMs;
}

/** In-memory rotation policies, answered synchronously on the Authenticate hot path. */
export interface RotationPolicies {
  /** The strictest maximum age for a key, from the last loaded snapshot (ms), or undefined. */
  maxAgeMs(key: Pick<KeyRecord, "tenantId" | "plan">): number | undefined;
  /** Re-reads every policy; resolves once a read that started after this call has finished. Keeps the old snapshot on failure. */
  reload(): Promise<void>;
  /** Stops the periodic refresh. */
  stop(): void;
}

export interface RotationPoliciesDeps {
  load(): Promise<RotationPolicyRecord[]>;
  /** Safety net behind NOTIFY: re-read this often even if no notification arrived. */
  refreshMs: number;
  onError(err: unknown): void;
}

/**
 * Holds every rotation policy in memory (there are few: at most one per tenant and plan), so that
 * `rotation_due` costs no I/O per request. A change reaches every replica through the
 * `rotation_policy:` NOTIFY (migration 005's trigger), and a periodic reload covers missed ones.
 */
export function createRotationPolicies(deps: RotationPoliciesDeps): RotationPolicies {
  let snapshot: readonly RotationPolicyRecord[] = [];
  let inFlight: Promise<void> | undefined;
  const timer = setInterval(() => void reload(), deps.refreshMs);
  timer.unref();

  // A reload requested while one is running may have been caused by a change that running read
  // missed, so it runs again once more rather than sharing the stale answer.
  let again = false;
  function reload(): Promise<void> {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      do {
        again = false;
        try {
          snapshot = await deps.load();
        } catch (err) {
          deps.onError(err);
        }
      } while (again);
    })().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  return {
    maxAgeMs: (key) => effectiveMaxAgeMs(snapshot, key.tenantId, key.plan),
    reload,
    stop: () => clearInterval(timer),
  };
}
