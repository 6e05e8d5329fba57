import type { ServiceImpl } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { invalidArgument, Violations } from "../domain/errors.js";
import type { KeyChanges } from "../domain/key.js";
import { isKeyId } from "../keys/format.js";
import type { KeyAdmin } from "../keys/key-admin.js";
import type { KeyService } from "../gen/tollgate/v1/key_service_pb.js";
import type { ApiKey } from "../gen/tollgate/v1/key_pb.js";
import type { AdminAuthenticator } from "./admin-auth.js";
import { keyToProto } from "./convert.js";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.js";
import {
  LIMITS, NAME_TOKEN_PATTERN, checkCidrs, checkEnvironment, checkMetadata, checkName, checkPermissions, checkPrefix, checkTenantId, checkTokens,
} from "./validate.js";

const UPDATABLE = ["name", "permissions", "roles", "plan", "metadata", "expires_at", "ip_allowlist", "owner_id"] as const;

function checkKeyId(v: Violations, field: string, keyId: string): void {
  if (keyId === "") v.add(field, "is required");
  else if (!isKeyId(keyId)) v.add(field, "must be a 16-character key id");
}

function checkPlan(v: Violations, field: string, plan: string): void {
  if (plan !== "" && !NAME_TOKEN_PATTERN.test(plan)) v.add(field, "must be 1-64 letters, digits, '_', '.', ':' or '-'");
}

function checkKeyFields(v: Violations, prefix: string, key: Pick<ApiKey, "name" | "permissions" | "roles" | "plan" | "metadata" | "ipAllowlist" | "ownerId">): void {
  checkName(v, `${prefix}name`, key.name);
  checkPermissions(v, `${prefix}permissions`, key.permissions);
  checkTokens(v, `${prefix}roles`, key.roles, LIMITS.roles);
  checkPlan(v, `${prefix}plan`, key.plan);
  checkMetadata(v, `${prefix}metadata`, key.metadata);
  checkCidrs(v, `${prefix}ip_allowlist`, key.ipAllowlist);
  if (key.ownerId.length > LIMITS.ownerIdLength) v.add(`${prefix}owner_id`, `must be at most ${LIMITS.ownerIdLength} characters`);
}

/** Reads UpdateKey's field mask into the set of changes; unknown paths are INVALID_ARGUMENT. */
function changesFrom(key: ApiKey, paths: readonly string[]): KeyChanges {
  if (paths.length === 0) throw invalidArgument("update_mask", "must name at least one field");
  const changes: KeyChanges = {};
  for (const path of paths) {
    switch (path) {
      case "name": changes.name = key.name; break;
      case "permissions": changes.permissions = key.permissions; break;
      case "roles": changes.roles = key.roles; break;
      case "plan": changes.plan = key.plan || "free"; break;
      case "metadata": changes.metadata = key.metadata; break;
      case "expires_at": changes.expiresAt = key.expiresAt ? timestampDate(key.expiresAt) : null; break;
      case "ip_allowlist": changes.ipAllowlist = key.ipAllowlist; break;
      case "owner_id": changes.ownerId = key.ownerId || null; break;
      default: throw invalidArgument("update_mask", `"${path.slice(0, 64)}" is not updatable; use ${UPDATABLE.join(", ")}`);
    }
  }
  return changes;
}

/** The admin KeyService: validation and encoding here, everything else in the key admin domain. */
export function createKeyService(admin: KeyAdmin, authenticate: AdminAuthenticator, now: () => number): ServiceImpl<typeof KeyService> {
  return {
    async createKey(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, false);
      checkEnvironment(v, "environment", req.environment);
      checkPrefix(v, "prefix", req.prefix);
      checkKeyFields(v, "", req);
      const expiresAt = req.expiresAt ? timestampDate(req.expiresAt) : null;
      if (expiresAt && expiresAt.getTime() <= now()) v.add("expires_at", "must be in the future");
      v.throwIfAny();
      const { key, secret } = await admin.createKey(caller, {
        tenantId: req.tenantId, name: req.name, environment: req.environment === "test" ? "test" : "live", prefix: req.prefix,
        permissions: req.permissions, roles: req.roles, plan: req.plan || "free", metadata: req.metadata, expiresAt,
        ipAllowlist: req.ipAllowlist, ownerId: req.ownerId || null,
      });
      return { key: keyToProto(key), secret };
    },

    async getKey(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkKeyId(v, "key_id", req.keyId);
      v.throwIfAny();
      return { key: keyToProto(await admin.getKey(caller, req.keyId)) };
    },

    async listKeys(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkTenantId(v, "tenant_id", req.tenantId, false);
      v.throwIfAny();
      const size = pageSize("page_size", req.pageSize);
      const tenantId = req.tenantId || caller.tenantId;
      const scope = `keys:${tenantId}:${req.includeRevoked}`;
      const position = decodePageToken("page_token", req.pageToken, scope, ["c", "k"]);
      const createdAt = position ? new Date(position.c!) : undefined;
      if (createdAt && Number.isNaN(createdAt.getTime())) throw invalidArgument("page_token", "is not a page token returned by this API");
      const after = position && createdAt ? { createdAt, keyId: position.k! } : undefined;
      const page = await admin.listKeys(caller, tenantId, size, after, req.includeRevoked);
      return {
        keys: page.keys.map(keyToProto),
        nextPageToken: page.next ? encodePageToken(scope, { c: page.next.createdAt.toISOString(), k: page.next.keyId }) : "",
      };
    },

    async updateKey(req, ctx) {
      const caller = await authenticate(ctx);
      if (!req.key) throw invalidArgument("key", "is required");
      const v = new Violations();
      checkKeyId(v, "key.key_id", req.key.keyId);
      checkKeyFields(v, "key.", req.key);
      v.throwIfAny();
      const changes = changesFrom(req.key, req.updateMask?.paths ?? []);
      return { key: keyToProto(await admin.updateKey(caller, req.key.keyId, changes)) };
    },

    async revokeKey(req, ctx) {
      const caller = await authenticate(ctx);
      const v = new Violations();
      checkKeyId(v, "key_id", req.keyId);
      checkName(v, "reason", req.reason);
      v.throwIfAny();
      return { key: keyToProto(await admin.revokeKey(caller, req.keyId, req.reason)) };
    },
  };
}
