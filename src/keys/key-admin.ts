import type pg from "pg";
import type { KeyChanges, KeyRecord, NewKey } from "../domain/key.js";
import { notFound, permissionDenied } from "../domain/errors.js";
import { withTransaction } from "../store/db.js";
import { keysRepo, type KeyCursor } from "../store/keys-repo.js";
import { tenantsRepo } from "../store/tenants-repo.js";
import { generateKey, hintOf, newKeyId } from "./format.js";
import type { SecretHasher } from "./hasher.js";

/** Permission that makes a key an administrator of its own tenant (exact match, no wildcards). */
export const ADMIN_PERMISSION = "tollgate:admin";
/** Permission that lets a key act in any tenant (root administrators; Authorize's X-Tenant-ID). */
export const CROSS_TENANT_PERMISSION = "tollgate:cross-tenant";

/** The proven identity behind an admin call. */
export interface AdminCaller {
  /** For the audit log: `key:<id>` or `cli:<user>`. */
  actor: string;
  tenantId: string;
  /** May act in every tenant. */
  root: boolean;
}

/** Everything needed to create a key except its id, secret and hash, which are generated here. */
export type CreateKeyInput = Omit<NewKey, "keyId" | "secretHash" | "hint">;

export interface KeyAdminDeps {
  pool: pg.Pool;
  hasher: SecretHasher;
  prefixes: { live: string; test: string };
}

/** A page of keys and the cursor of the next one. */
export interface KeyPage {
  keys: KeyRecord[];
  next: KeyCursor | undefined;
}

/** Admin operations on keys, with tenant scoping enforced here rather than in each handler. */
export function createKeyAdmin(deps: KeyAdminDeps) {
  /** Resolves the tenant a call targets; "" means the caller's own. */
  function targetTenant(caller: AdminCaller, requested: string): string {
    const tenantId = requested || caller.tenantId;
    if (tenantId !== caller.tenantId && !caller.root) {
      throw permissionDenied("TENANT_FORBIDDEN", "this admin key may act only inside its own tenant");
    }
    return tenantId;
  }

  /** A key outside the caller's reach is reported as missing, so its existence does not leak. */
  function visible(caller: AdminCaller, key: KeyRecord | undefined, keyId: string): KeyRecord {
    if (!key || (!caller.root && key.tenantId !== caller.tenantId)) throw notFound("key", keyId);
    return key;
  }

  function checkGrant(caller: AdminCaller, permissions: readonly string[]): void {
    if (!caller.root && permissions.includes(CROSS_TENANT_PERMISSION)) {
      throw permissionDenied("GRANT_FORBIDDEN", `only a root admin may grant ${CROSS_TENANT_PERMISSION}`);
    }
  }

  return {
    async createKey(caller: AdminCaller, input: CreateKeyInput): Promise<{ key: KeyRecord; secret: string }> {
      const tenantId = targetTenant(caller, input.tenantId);
      checkGrant(caller, input.permissions);
      const generated = generateKey(input.prefix || deps.prefixes[input.environment], newKeyId());
      const secretHash = await deps.hasher.hash(generated.secret);
      const key = await withTransaction(deps.pool, async (tx) => {
        if (!(await tenantsRepo.findTenant(tx, tenantId))) throw notFound("tenant", tenantId);
        return keysRepo.insertKey(tx, { ...input, tenantId, keyId: generated.keyId, prefix: generated.prefix, secretHash, hint: hintOf(generated) }, caller.actor);
      });
      return { key, secret: generated.full };
    },

    async getKey(caller: AdminCaller, keyId: string): Promise<KeyRecord> {
      return visible(caller, await keysRepo.findKey(deps.pool, keyId), keyId);
    },

    async listKeys(caller: AdminCaller, tenantId: string, pageSize: number, after: KeyCursor | undefined, includeRevoked: boolean): Promise<KeyPage> {
      const target = targetTenant(caller, tenantId);
      const rows = await keysRepo.listKeys(deps.pool, target, pageSize + 1, after, includeRevoked);
      const keys = rows.slice(0, pageSize);
      const last = keys[keys.length - 1];
      return { keys, next: rows.length > pageSize && last ? { createdAt: last.createdAt, keyId: last.keyId } : undefined };
    },

    async updateKey(caller: AdminCaller, keyId: string, changes: KeyChanges): Promise<KeyRecord> {
      if (changes.permissions) checkGrant(caller, changes.permissions);
      return withTransaction(deps.pool, async (tx) => {
        visible(caller, await keysRepo.findKey(tx, keyId), keyId);
        const updated = await keysRepo.updateKey(tx, keyId, changes, caller.actor);
        if (!updated) throw notFound("key", keyId);
        return updated;
      });
    },

    async revokeKey(caller: AdminCaller, keyId: string, reason: string): Promise<KeyRecord> {
      return withTransaction(deps.pool, async (tx) => {
        visible(caller, await keysRepo.findKey(tx, keyId), keyId);
        const revoked = await keysRepo.revokeKey(tx, keyId, reason, caller.actor);
        if (!revoked) throw notFound("key", keyId);
        return revoked;
      });
    },
  };
}

export type KeyAdmin = ReturnType<typeof createKeyAdmin>;
