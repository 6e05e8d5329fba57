import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { intVar, type Env } from "./env.js";
import { parseMasterKey, parseTokenConfig, type TokenConfig } from "../tokens/token-config.js";
import type { QuotaSettings } from "../quota/quota-runtime.js";
import { DEFAULT_CREDENTIAL_SOURCES, parseCredentialSources, type CredentialSource } from "../envoy/credentials.js";

/** Argon2id cost parameters; stored inside every PHC string, so they can be raised later. */
export interface Argon2Params {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

/** The whole service configuration, validated once at start-up and frozen. */
export interface Config {
  host: string;
  grpcPort: number;
  httpPort: number;
  /** A PostgreSQL connection string; undefined = run the embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** Where the embedded PostgreSQL and generated secrets live. */
  dataDir: string;
  dbPoolSize: number;
  logLevel: string;
  /** Server-side secret mixed into the verified-key cache digest (SHA-256 of pepper and key). */
  pepper: Buffer;
  argon2: Argon2Params;
  /** Most argon2 verifications running at once; the rest wait in a bounded queue. */
  argon2Concurrency: number;
  argon2QueueLimit: number;
  /** How long a verified key is trusted before its row is re-read. */
  keyCacheTtlMs: number;
  /** How long a cached key keeps working while PostgreSQL is unreachable. */
  keyCacheStaleMs: number;
  keyCacheMaxEntries: number;
  /** How long an unknown key id is remembered as unknown. */
  negativeCacheTtlMs: number;
  /** Wrong secrets allowed per key id per minute before verification is refused outright. */
  failedSecretsPerMinute: number;
  /** Deadline applied to a database call made on behalf of an RPC without its own deadline. */
  dbTimeoutMs: number;
  shutdownGraceMs: number;
  /** Default key prefix per environment. */
  prefixes: { live: string; test: string };
  /** Key rotation: default and largest grace period, and how often replicas re-read rotation policies. */
  rotation: { defaultGraceSeconds: number; maxGraceSeconds: number; policyRefreshMs: number };
  /** 32-byte AES-256-GCM key for signing keys at rest; undefined = generated and kept in `dataDir`. */
  masterKey: Buffer | undefined;
  /** Access tokens: see src/tokens/token-config.ts. */
  tokens: TokenConfig;
  /** Quota leasing and flushing (TOLLGATE_QUOTA_*). */
  quota: QuotaSettings;
  /** The Envoy ext_authz adapter: credential sources in order, and trusted `x-forwarded-for` hops (0 = ignore XFF). */
  envoy: { credentialSources: CredentialSource[]; xffTrustedHops: number };
}

/** A configuration problem, listing every bad variable at once. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}



/**
 * Parses and validates configuration from environment variables. Every problem is collected and
 * reported together so an operator fixes them in one go. Secrets are never echoed back.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const problems: string[] = [];
  const int = (name: string, def: number, min: number, max: number): number => intVar(env, problems, name, def, min, max);
  const str = (name: string, def: string): string => env[name] || def;
  const pepperRaw = env.TOLLGATE_PEPPER;
  let pepper = randomBytes(32);
  if (pepperRaw !== undefined && pepperRaw !== "") {
    if (pepperRaw.length < 32) problems.push("TOLLGATE_PEPPER must be at least 32 characters");
    else pepper = Buffer.from(pepperRaw, "utf8");
  }
  const logLevel = str("TOLLGATE_LOG_LEVEL", "info");
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) {
    problems.push(`TOLLGATE_LOG_LEVEL must be one of trace|debug|info|warn|error|fatal|silent, got "${logLevel}"`);
  }
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push("DATABASE_URL must start with postgres:// or postgresql://");
  }
  const config: Config = {
    host: str("TOLLGATE_HOST", "0.0.0.0"),
    grpcPort: int("TOLLGATE_GRPC_PORT", 50051, 0, 65535),
    httpPort: int("TOLLGATE_HTTP_PORT", 8080, 0, 65535),
    databaseUrl,
    dataDir: str("TOLLGATE_DATA_DIR", ".tollgate"),
    dbPoolSize: int("TOLLGATE_DB_POOL_SIZE", 10, 1, 200),
    logLevel,
    pepper,
    argon2: {
      memoryKiB: int("TOLLGATE_ARGON2_MEMORY_KIB", 19456, 19456, 4 * 1024 * 1024),
      iterations: int("TOLLGATE_ARGON2_ITERATIONS", 2, 2, 100),
      parallelism: int("TOLLGATE_ARGON2_PARALLELISM", 1, 1, 16),
    },
    // One core stays free for the event loop: on 2 cores, two argon2 threads starve it (measured).
    argon2Concurrency: int("TOLLGATE_ARGON2_CONCURRENCY", Math.max(1, availableParallelism() - 1), 1, 64),
    argon2QueueLimit: int("TOLLGATE_ARGON2_QUEUE_LIMIT", 256, 1, 100000),
    keyCacheTtlMs: int("TOLLGATE_KEY_CACHE_TTL_MS", 60_000, 0, 3_600_000),
    keyCacheStaleMs: int("TOLLGATE_KEY_CACHE_STALE_MS", 300_000, 0, 86_400_000),
    keyCacheMaxEntries: int("TOLLGATE_KEY_CACHE_MAX_ENTRIES", 100_000, 1, 10_000_000),
    negativeCacheTtlMs: int("TOLLGATE_NEGATIVE_CACHE_TTL_MS", 10_000, 0, 3_600_000),
    failedSecretsPerMinute: int("TOLLGATE_FAILED_SECRETS_PER_MINUTE", 10, 1, 100000),
    dbTimeoutMs: int("TOLLGATE_DB_TIMEOUT_MS", 2_000, 10, 60_000),
    shutdownGraceMs: int("TOLLGATE_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    prefixes: {
      live: str("TOLLGATE_PREFIX_LIVE", "sk_live"),
      test: str("TOLLGATE_PREFIX_TEST", "sk_test"),
    },
    rotation: {
      defaultGraceSeconds: int("TOLLGATE_ROTATION_DEFAULT_GRACE_SECONDS", 86_400, 0, 31_536_000),
      maxGraceSeconds: int("TOLLGATE_ROTATION_MAX_GRACE_SECONDS", 30 * 86_400, 0, 31_536_000),
      policyRefreshMs: int("TOLLGATE_ROTATION_POLICY_REFRESH_MS", 60_000, 1_000, 3_600_000),
    },
    masterKey: parseMasterKey(env.TOLLGATE_MASTER_KEY, problems),
    tokens: parseTokenConfig(env, problems),
    quota: {
      leasing: {
        minBlock: int("TOLLGATE_QUOTA_MIN_BLOCK", 50, 1, 1_000_000),
        maxBlock: int("TOLLGATE_QUOTA_MAX_BLOCK", 1000, 1, 1_000_000),
        targetLeaseMs: int("TOLLGATE_QUOTA_TARGET_LEASE_MS", 1000, 1, 600_000),
        divisor: int("TOLLGATE_QUOTA_DIVISOR", 4, 1, 1000),
        idleReturnMs: int("TOLLGATE_QUOTA_IDLE_RETURN_MS", 60_000, 0, 3_600_000),
        bucketLeaseMs: int("TOLLGATE_QUOTA_BUCKET_LEASE_MS", 1000, 1, 600_000),
        recheckMs: int("TOLLGATE_QUOTA_RECHECK_MS", 1000, 0, 600_000),
      },
      flushMs: int("TOLLGATE_QUOTA_FLUSH_MS", 1000, 10, 600_000),
      usageFlushMs: int("TOLLGATE_USAGE_FLUSH_MS", 5000, 10, 3_600_000),
      catalogTtlMs: int("TOLLGATE_QUOTA_CATALOG_TTL_MS", 60_000, 0, 3_600_000),
    },
    envoy: { credentialSources: [], xffTrustedHops: 0 },
    ...overrides,
  };
  for (const [env_, prefix] of Object.entries(config.prefixes)) {
    if (!PREFIX_PATTERN.test(prefix)) problems.push(`key prefix for ${env_} must match ${PREFIX_PATTERN}, got "${prefix}"`);
  }
  if (config.rotation.defaultGraceSeconds > config.rotation.maxGraceSeconds) {
    problems.push("TOLLGATE_ROTATION_DEFAULT_GRACE_SECONDS must not exceed TOLLGATE_ROTATION_MAX_GRACE_SECONDS");
  }
  if (!overrides.envoy) {
    const sources = parseCredentialSources(str("TOLLGATE_ENVOY_CREDENTIAL_SOURCES", DEFAULT_CREDENTIAL_SOURCES));
    if (typeof sources === "string") problems.push(`TOLLGATE_ENVOY_CREDENTIAL_SOURCES: ${sources}`);
    else config.envoy = { credentialSources: sources, xffTrustedHops: int("TOLLGATE_ENVOY_XFF_TRUSTED_HOPS", 0, 0, 16) };
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** Key prefixes: lower-case letters, digits and underscores, starting with a letter. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,15}(_[a-z0-9]{1,16}){0,2}$/;

/** A copy of the configuration safe to log: secrets and credentials in URLs are masked. */
export function redactedConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    pepper: "[redacted]",
    masterKey: config.masterKey ? "[redacted]" : undefined,
    databaseUrl: config.databaseUrl?.replace(/\/\/([^:@/]+)(:[^@/]*)?@/, "//$1:[redacted]@"),
  };
}
