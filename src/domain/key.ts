import type { PlanOverrides } from "./policy.js";

/** A stored API key as the domain sees it. `secretHash` is an argon2id PHC string, never a secret. */
export interface KeyRecord {
  keyId: string;
  tenantId: string;
  name: string;
  environment: "live" | "test";
  prefix: string;
  secretHash: string;
  hint: string;
  permissions: string[];
  roles: string[];
  plan: string;
  metadata: Record<string, string>;
  expiresAt: Date | null;
  ipAllowlist: string[];
  ownerId: string | null;
  revokedAt: Date | null;
  revokedReason: string | null;
  predecessorKeyId: string | null;
  successorKeyId: string | null;
  graceExpiresAt: Date | null;
  /**
   * The identity quota and rate-limit counters key on: the key id of the first key of a rotation
   * lineage, copied to every successor, so that an old key in grace and its successor share counters.
   */
  quotaSubject: string;
  /** Plan fields this key replaces for itself (`tollgate keys permissions`); {} inherits all. */
  policyOverrides: PlanOverrides;
  createdAt: Date;
  updatedAt: Date;
}

/** Fields an operator sets when creating a key; the rest are defaulted by the store. */
export type NewKey = Pick<
  KeyRecord,
  "keyId" | "tenantId" | "name" | "environment" | "prefix" | "secretHash" | "hint" | "permissions" | "roles" | "plan" | "metadata" | "expiresAt" | "ipAllowlist" | "ownerId"
>;

/** Fields UpdateKey may replace. */
export type KeyChanges = Partial<Pick<KeyRecord, "name" | "permissions" | "roles" | "plan" | "metadata" | "expiresAt" | "ipAllowlist" | "ownerId">>;

/** Who did something, for the audit log: a key id, `cli:<user>`, or `system`. */
export type Actor = string;
