import { describe, expect, it, vi } from "vitest";
import { createRotationPolicies, effectiveMaxAgeMs, isRotationDue } from "../src/keys/rotation-policy.js";
import { graceEnd } from "../src/keys/key-rotation.js";
import type { RotationPolicyRecord } from "../src/store/rotation-repo.js";

const DAY = 86_400_000;

describe("rotation policy rules", () => {
  const policies: RotationPolicyRecord[] = [
    { tenantId: null, plan: null, maxAgeSeconds: 365 * 86_400 },
    { tenantId: "acme", plan: null, maxAgeSeconds: 90 * 86_400 },
    { tenantId: null, plan: "pro", maxAgeSeconds: 30 * 86_400 },
    { tenantId: "other", plan: "pro", maxAgeSeconds: 7 * 86_400 },
  ];

  it("applies the strictest matching policy and ignores other tenants' ones", () => {
    expect(effectiveMaxAgeMs(policies, "acme", "free")).toBe(90 * DAY);
    expect(effectiveMaxAgeMs(policies, "acme", "pro")).toBe(30 * DAY);
    expect(effectiveMaxAgeMs(policies, "globex", "free")).toBe(365 * DAY);
    expect(effectiveMaxAgeMs(policies, "other", "pro")).toBe(7 * DAY);
    expect(effectiveMaxAgeMs([], "acme", "free")).toBeUndefined();
  });

  it("marks a key due exactly at its maximum age, never once it has a successor", () => {
    const createdAt = new Date(0);
    expect(isRotationDue({ createdAt, successorKeyId: null }, 90 * DAY - 1, 90 * DAY)).toBe(false);
    expect(isRotationDue({ createdAt, successorKeyId: null }, 90 * DAY, 90 * DAY)).toBe(true);
    expect(isRotationDue({ createdAt, successorKeyId: "x" }, 900 * DAY, 90 * DAY)).toBe(false);
    expect(isRotationDue({ createdAt, successorKeyId: null }, 900 * DAY, undefined)).toBe(false);
  });

  it("caps grace at the old key's expiry", () => {
    expect(graceEnd({ expiresAt: null }, 1000, 500).getTime()).toBe(1500);
    expect(graceEnd({ expiresAt: new Date(1200) }, 1000, 500).getTime()).toBe(1200);
    expect(graceEnd({ expiresAt: new Date(9000) }, 1000, 0).getTime()).toBe(1000);
  });
});

describe("in-memory rotation policies", () => {
  it("re-reads when a reload is requested during a read, so a change that read missed is not lost", async () => {
    const reads: Array<(p: RotationPolicyRecord[]) => void> = [];
    const policies = createRotationPolicies({ load: () => new Promise((resolve) => reads.push(resolve)), refreshMs: 3_600_000, onError: () => undefined });
    const first = policies.reload();
    const second = policies.reload(); // e.g. a NOTIFY arriving while the first read runs
    reads[0]!([]);
    await vi.waitFor(() => expect(reads).toHaveLength(2));
    reads[1]!([{ tenantId: "acme", plan: null, maxAgeSeconds: 60 }]);
    await Promise.all([first, second]);
    expect(policies.maxAgeMs({ tenantId: "acme", plan: "free" })).toBe(60_000);
    policies.stop();
  });

  it("keeps the last snapshot when a reload fails", async () => {
    let fail = false;
    const errors: unknown[] = [];
    const policies = createRotationPolicies({
      load: async () => {
        if (fail) throw new Error("database down");
        return [{ tenantId: null, plan: null, maxAgeSeconds: 10 }];
      },
      refreshMs: 3_600_000,
      onError: (err) => errors.push(err),
    });
    await policies.reload();
    fail = true;
    await policies.reload();
    expect(errors).toHaveLength(1);
    expect(policies.maxAgeMs({ tenantId: "t", plan: "p" })).toBe(10_000);
    policies.stop();
  });
});
