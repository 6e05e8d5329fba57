import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type net from "node:net";
import type pg from "pg";
import type { Config } from "./config/config.js";
import { createAccessLogger, createLogger, flushLogs, type Logger } from "./observability/logger.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { createPool } from "./store/db.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./store/embedded.js";
import { migrate } from "./store/migrate.js";
import { keysRepo } from "./store/keys-repo.js";
import { listenForInvalidations, type InvalidationListener } from "./store/notify.js";
import { createHasher } from "./keys/hasher.js";
import { createKeyVerifier, type KeyVerifier } from "./keys/verifier.js";
import { createKeyAdmin } from "./keys/key-admin.js";
import { createKeyRotator } from "./keys/key-rotation.js";
import { createRotationPolicies } from "./keys/rotation-policy.js";
import { rotationRepo } from "./store/rotation-repo.js";
import { createRotateKeyHandler } from "./services/rotate-key.js";
import { createPolicyCache, type PolicyCache } from "./policy/policy-cache.js";
import { createPolicyAdmin } from "./policy/policy-admin.js";
import { policyRepo } from "./store/policy-repo.js";
import { createPolicyService } from "./services/policy-service.js";
import { PolicyService, file_tollgate_v1_policy_service } from "./gen/tollgate/v1/policy_service_pb.js";
import { createAdminAuthenticator } from "./services/admin-auth.js";
import { createAuthService } from "./services/auth-service.js";
import { createKeyService } from "./services/key-service.js";
import { createTenantService } from "./services/tenant-service.js";
import { createUsageService } from "./services/usage-service.js";
import { createQuotaRuntime, type QuotaRuntime } from "./quota/quota-runtime.js";
import { UsageService, file_tollgate_v1_usage_service } from "./gen/tollgate/v1/usage_service_pb.js";
import { instrument } from "./transport/pipeline.js";
import { mountOnGrpc, type WireDecoders } from "./transport/grpc-server.js";
import { createHttpServer } from "./transport/http-server.js";
import { createHealthService, HealthStatus } from "./transport/health.js";
import { createReflectionServices } from "./transport/reflection.js";
import { HealthCheckResponse_ServingStatus as Serving, Health, file_grpc_health_v1_health } from "./gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { AuthService, file_tollgate_v1_auth_service } from "./gen/tollgate/v1/auth_service_pb.js";
import { KeyService, file_tollgate_v1_key_service } from "./gen/tollgate/v1/key_service_pb.js";
import { TenantService, file_tollgate_v1_tenant_service } from "./gen/tollgate/v1/tenant_service_pb.js";
import { file_google_rpc_error_details } from "./gen/google/rpc/error_details_pb.js";
import { createRoutes } from "./transport/routes.js";
import { LimitService, file_tollgate_v1_limit_service } from "./gen/tollgate/v1/limit_service_pb.js";
import { createLimitService } from "./services/limit-service.js";
import { createLimitAdmin } from "./quota/limit-admin.js";
import { startTokens, type TokenParts } from "./tokens/setup.js";
import { createSigningKeyService } from "./services/signing-key-service.js";
import { createOAuthRoutes } from "./transport/oauth-routes.js";
import { SigningKeyService, file_tollgate_v1_signing_key_service } from "./gen/tollgate/v1/signing_key_service_pb.js";
import { Authorization, file_envoy_service_auth_v3_external_auth } from "./gen/envoy/service/auth/v3/external_auth_pb.js";
import { RateLimitService, file_envoy_service_ratelimit_v3_rls } from "./gen/envoy/service/ratelimit/v3/rls_pb.js";
import { checkWireDecoders, createAuthorizationService } from "./envoy/authorization-service.js";
import { createRateLimitService } from "./envoy/rate-limit-service.js";
import { createEnvoyPorts } from "./envoy/domain-ports.js";

/** A running Tollgate: its listeners, its parts (for tests and the CLI), and a graceful stop. */
export interface App {
  config: Config;
  grpcPort: number;
  httpPort: number;
  pool: pg.Pool;
  databaseUrl: string;
  logger: Logger;
  metrics: Metrics;
  verifier: KeyVerifier;
  /** Plans, roles and compiled key policies (Authorize's hot path; ConsumeQuota may read plans). */
  policies: PolicyCache;
  health: HealthStatus;
  /** Signing keys, keyring, token issuer and verifier. */
  tokens: TokenParts;
  quota: QuotaRuntime;
  stop(): Promise<void>;
}

export interface AppOptions {
  logger?: Logger;
  now?: () => number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Mounted = [DescService, ServiceImpl<any>, WireDecoders?];

/** Opens the database (embedded when no URL is configured) and applies migrations. */
async function openDatabase(config: Config, logger: Logger, metrics: Metrics) {
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir, (msg) => logger.info(msg));
    databaseUrl = embedded.connectionString;
    logger.info({ dataDir: config.dataDir }, "using embedded PostgreSQL");
  }
  const pool = createPool({ connectionString: databaseUrl, poolSize: config.dbPoolSize, timeoutMs: config.dbTimeoutMs }, (err) => {
    metrics.dbErrors.inc({ operation: "idle" });
    logger.warn({ err }, "idle database connection failed");
  });
  const applied = await migrate(pool);
  if (applied.length > 0) logger.info({ applied }, "applied migrations");
  return { pool, databaseUrl, embedded };
}

/**
 * The composition root: the only place concrete parts are wired together. Starts the database
 * (or the embedded one), the caches and their invalidation listener, both listeners, and health.
 */
export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const now = options.now ?? Date.now;
  const metrics = createMetrics();
  const { pool, databaseUrl, embedded } = await openDatabase(config, logger, metrics);

  const hasher = createHasher({
    params: config.argon2,
    concurrency: config.argon2Concurrency,
    queueLimit: config.argon2QueueLimit,
    onVerify: (seconds, ok) => metrics.argon2Duration.observe({ outcome: ok ? "match" : "mismatch" }, seconds),
    onQueue: (depth) => metrics.argon2Queue.set(depth),
  });
  const verifier = createKeyVerifier({
    loadKey: (keyId) =>
      keysRepo.findKey(pool, keyId).catch((err: unknown) => {
        metrics.dbErrors.inc({ operation: "find_key" });
        throw err;
      }),
    loadKeys: (keyIds) =>
      keysRepo.findKeys(pool, keyIds).catch((err: unknown) => {
        metrics.dbErrors.inc({ operation: "find_keys" });
        throw err;
      }),
    hasher,
    pepper: config.pepper,
    now,
    ttlMs: config.keyCacheTtlMs,
    staleMs: config.keyCacheStaleMs,
    maxEntries: config.keyCacheMaxEntries,
    negativeTtlMs: config.negativeCacheTtlMs,
    failedSecretsPerMinute: config.failedSecretsPerMinute,
    rehash: (key, secret) => {
      void hasher.hash(secret).then((h) => keysRepo.replaceHash(pool, key.keyId, key.secretHash, h)).catch((err: unknown) => logger.warn({ err, keyId: key.keyId }, "rehash failed"));
    },
    onCache: (result) => metrics.keyCacheLookup(result),
  });

  const rotationPolicies = createRotationPolicies({
    load: () => rotationRepo.listPolicies(pool),
    refreshMs: config.rotation.policyRefreshMs,
    onError: (err) => logger.warn({ err }, "reloading rotation policies failed"),
  });
  await rotationPolicies.reload();

  const tokens = await startTokens({ config, pool, logger, now, verifier });
  const policies = createPolicyCache({
    loadPlan: (name) => policyRepo.findPlan(pool, name),
    loadRoles: (tenantId) => policyRepo.listRoles(pool, tenantId),
    now, ttlMs: config.keyCacheTtlMs, staleMs: config.keyCacheStaleMs, maxEntries: config.keyCacheMaxEntries,
  });

  const quota = createQuotaRuntime(pool, config.quota, now, logger, metrics.registry);
  // A changed limit is reloaded at once rather than on the next call, so the next call already sees it.
  const reloadLimits = () => {
    quota.catalog.invalidate();
    void quota.catalog.get().catch(() => undefined);
  };
  const health = new HealthStatus([["", Serving.NOT_SERVING]]);
  const listener = listenForInvalidations({
    connectionString: databaseUrl,
    logger,
    onMessage: (payload) => {
      if (payload.startsWith("key:")) verifier.invalidate(payload.slice(4));
      else if (payload.startsWith("rotation_policy:")) void rotationPolicies.reload();
      else if (payload.startsWith("plan:") || payload.startsWith("roles:")) policies.handleInvalidation(payload);
      else if (payload.startsWith("limits:")) reloadLimits();
      else tokens.onInvalidation(payload);
    },
    onReset: () => {
      verifier.invalidateAll();
      policies.invalidateAll();
      reloadLimits();
      void rotationPolicies.reload();
      tokens.onReset();
    },
  });

  const adminAuth = createAdminAuthenticator(verifier);
  const keyAdmin = createKeyAdmin({ pool, hasher, prefixes: config.prefixes });
  const reflection = createReflectionServices({
    files: [file_tollgate_v1_auth_service, file_tollgate_v1_key_service, file_tollgate_v1_tenant_service, file_tollgate_v1_signing_key_service, file_tollgate_v1_policy_service, file_tollgate_v1_usage_service, file_tollgate_v1_limit_service, file_grpc_health_v1_health, file_google_rpc_error_details, file_envoy_service_auth_v3_external_auth, file_envoy_service_ratelimit_v3_rls] as DescFile[],
  });
  const shutdown = new AbortController();
  const accessLogger = createAccessLogger(logger, shutdown.signal);
  const pipeline = { logger, metrics, accessLogger };
  const rotateKey = createRotateKeyHandler({
    rotator: createKeyRotator({ pool, hasher, now, onRotated: (keyId) => verifier.invalidate(keyId) }),
    verifier, adminAuth,
    defaultGraceMs: config.rotation.defaultGraceSeconds * 1000,
    maxGraceMs: config.rotation.maxGraceSeconds * 1000,
  });
  const onDecision = (rpc: string, code: string) => metrics.decision(rpc, code);
  // Envoy adapters: the same verifier, policy decision and quota service as the AuthService RPCs.
  const envoyDeps = { authenticate: verifier.verify, authenticateToken: tokens.verifier.verify, ...createEnvoyPorts({ verifier, policies, quota: quota.service }), now, onDecision, ...config.envoy };
  // Answer UNAVAILABLE with a tenth of Envoy's timeout to spare, so it arrives before Envoy gives up.
  const envoyPipeline = { ...pipeline, deadlineMarginRatio: 0.1 };
  const services: Mounted[] = [
    [AuthService, instrument(AuthService, createAuthService({ verifier, tokens, policies, quota: quota.service, now, onDecision, rotateKey, maxKeyAgeMs: (key) => rotationPolicies.maxAgeMs(key) }), pipeline)],
    [KeyService, instrument(KeyService, createKeyService(keyAdmin, adminAuth, now), pipeline)],
    [TenantService, instrument(TenantService, createTenantService(pool, adminAuth), pipeline)],
    [SigningKeyService, instrument(SigningKeyService, createSigningKeyService(tokens.signingKeys, adminAuth, now), pipeline)],
    [PolicyService, instrument(PolicyService, createPolicyService(createPolicyAdmin({ pool, policies }), adminAuth), pipeline)],
    [UsageService, instrument(UsageService, createUsageService(quota.repo, adminAuth, now), pipeline)],
    [LimitService, instrument(LimitService, createLimitService(createLimitAdmin(pool), adminAuth), pipeline)],
    // Check reads its request straight from the wire on the grpc-js listener (its hot path).
    [Authorization, instrument(Authorization, createAuthorizationService(envoyDeps), envoyPipeline), checkWireDecoders],
    [RateLimitService, instrument(RateLimitService, createRateLimitService(envoyDeps), envoyPipeline)],
    // Health goes through the same pipeline as everything else: it is also the benchmark's no-op baseline.
    [Health, instrument(Health, createHealthService(health), pipeline)],
    [ReflectionV1, reflection.v1],
    [ReflectionV1alpha, reflection.v1alpha],
  ];
  const serviceNames = services.map(([s]) => s.typeName).filter((n) => !n.startsWith("grpc."));

  // Channelz is not served here, and its per-call trackers cost every call ~1.5 KB of allocation and a clock read.
  const grpcServer = new grpc.Server({ "grpc.keepalive_permit_without_calls": 1, "grpc.max_receive_message_length": 1024 * 1024, "grpc.enable_channelz": 0 });
  for (const [service, impl, decoders] of services) mountOnGrpc(grpcServer, service, impl, shutdown.signal, decoders);
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`${config.host}:${config.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  let ready = false;
  const routes = { ...createRoutes({ metrics, ready: () => ready }), ...createOAuthRoutes({ tokens, keyring: tokens.keyring, config: config.tokens, logger }) };
  const httpServer = createHttpServer({ services, routes, shutdownSignal: shutdown.signal });
  const sockets = new Set<net.Socket>();
  httpServer.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  const httpPort = await new Promise<number>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(config.httpPort, config.host, () => resolve((httpServer.address() as net.AddressInfo).port));
  });

  // Readiness follows the database: a cheap probe, and the invalidation listener's connection.
  const probe = async () => {
    const ok = await pool.query("SELECT 1").then(() => listener.connected, () => false);
    if (ok !== ready) logger[ok ? "info" : "warn"]({ ready: ok }, "readiness changed");
    ready = ok;
    const status = ok ? Serving.SERVING : Serving.NOT_SERVING;
    health.set("", status);
    for (const name of serviceNames) health.set(name, status);
  };
  await probe();
  const probeTimer = setInterval(() => void probe(), 1_000);
  probeTimer.unref();
  logger.info({ grpcPort, httpPort, host: config.host }, "tollgate listening");

  let stopping: Promise<void> | undefined;
  async function stop(): Promise<void> {
    clearInterval(probeTimer);
    rotationPolicies.stop();
    tokens.stop();
    ready = false;
    health.set("", Serving.NOT_SERVING);
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        grpcServer.forceShutdown();
        resolve();
      }, config.shutdownGraceMs);
      grpcServer.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    shutdown.abort();
    await new Promise<void>((resolve) => {
      httpServer.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    // Calls are drained: hand leased quota back and write the last usage before the pool closes.
    await quota.close();
    await listener.close();
    await pool.end();
    await embedded?.stop();
    metrics.stop();
    logger.info("tollgate stopped");
    flushLogs(accessLogger); // its batch first, into the shared destination
    flushLogs(logger);
  }

  return {
    config, grpcPort, httpPort, pool, databaseUrl, logger, metrics, verifier, policies, health, tokens, quota,
    stop: () => (stopping ??= stop()),
  };
}
