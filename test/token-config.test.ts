import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactedConfig } from "../src/config/config.js";
import { resolveMasterKey } from "../src/tokens/master-key.js";
import { grants } from "../src/tokens/scopes.js";

const MASTER = "ab".repeat(32);

describe("token configuration", () => {
  it("defaults to EdDSA, a 1 hour lifetime, 30 s skew and no automatic rotation", () => {
    const { tokens, masterKey } = loadConfig({});
    expect(tokens).toMatchObject({ signingAlgorithm: "EdDSA", defaultTtlSeconds: 3600, maxTtlSeconds: 3600, clockSkewSeconds: 30, rotateEverySeconds: 0, audiences: ["tollgate"] });
    expect(masterKey).toBeUndefined();
  });

  it("lists every bad token setting at once and never echoes the master key", () => {
    const bad = "not-a-valid-master-key";
    const err = (() => {
      try {
        loadConfig({ TOLLGATE_MASTER_KEY: bad, TOLLGATE_SIGNING_ALG: "HS256", TOLLGATE_TOKEN_TTL_SECONDS: "7200", TOLLGATE_TOKEN_CLOCK_SKEW_SECONDS: "9999", TOLLGATE_SIGNING_KEY_ROTATE_EVERY_SECONDS: "60" });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.join("\n")).toMatch(/TOLLGATE_MASTER_KEY[\s\S]*TOLLGATE_TOKEN_TTL_SECONDS[\s\S]*TOLLGATE_SIGNING_ALG[\s\S]*ROTATE_EVERY[\s\S]*CLOCK_SKEW/);
    expect(err!.message).not.toContain(bad);
  });

  it("accepts a hex or base64 master key and redacts it from the config dump", () => {
    const hex = loadConfig({ TOLLGATE_MASTER_KEY: MASTER }).masterKey!;
    expect(hex.length).toBe(32);
    expect(loadConfig({ TOLLGATE_MASTER_KEY: hex.toString("base64") }).masterKey!.equals(hex)).toBe(true);
    expect(JSON.stringify(redactedConfig(loadConfig({ TOLLGATE_MASTER_KEY: MASTER })))).not.toContain(hex.toString("hex"));
  });

  it("without a configured master key, generates one in the data dir (0600) once, with a warning", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tollgate-mk-"));
    try {
      const warnings: string[] = [];
      const first = await resolveMasterKey(undefined, dir, (m) => warnings.push(m));
      const second = await resolveMasterKey(undefined, dir, () => undefined);
      expect(first.length).toBe(32);
      expect(second.equals(first)).toBe(true);
      expect(warnings[0]).toContain("TOLLGATE_MASTER_KEY");
      expect((await stat(join(dir, "master-key"))).mode & 0o777).toBe(0o600);
      const configured = Buffer.alloc(32, 1);
      expect(await resolveMasterKey(configured, dir, () => expect.unreachable())).toBe(configured);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("lets a scope narrow a permission but never widen it", () => {
    expect(grants("chat:*", "chat:write")).toBe(true);
    expect(grants("chat:*", "chat:files:read")).toBe(true);
    expect(grants("*", "anything:at:all")).toBe(true);
    expect(grants("chat:write", "chat:write")).toBe(true);
    expect(grants("chat:write", "chat:*")).toBe(false);
    expect(grants("chat:*", "chat")).toBe(false);
    expect(grants("chat:*", "chatter:write")).toBe(false);
    expect(grants("chat:*", "*")).toBe(false);
  });
});
