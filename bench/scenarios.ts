/**
 * The benchmark scenarios, in the order they run within each round. To add one, append an entry:
 * a load scenario needs a name, the unary method, a baseline to compare with, and a `setup` that
 * seeds what it needs and returns the request plus a check of the answer (see bench/README.md).
 */
import { generateKey } from "../src/keys/format.js";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.js";
import { AuthService } from "../src/gen/tollgate/v1/auth_service_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";
import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { argon2Figures, delta } from "./metrics.js";
import { paced } from "./paced.js";
import { customScenario, loadScenario, type BenchContext, type Scenario } from "./scenario.js";
import { ENVOY_HEADERS, moreScenarios } from "./scenarios-more.js";

const CLIENT_IP = "203.0.113.7";
const WRONG_SECRETS_PER_SEC = Number(process.env.BENCH_WRONG_SECRETS_PER_SEC ?? 200);
const COLD_KEYS = Number(process.env.BENCH_COLD_KEYS ?? 300);
const COLD_CONCURRENCY = Number(process.env.BENCH_COLD_CONCURRENCY ?? 16);

/** The no-op's request (the server's overall health) and its check. */
const healthServing = async () => ({
  request: { service: "" },
  expect: (res: { status: HealthCheckResponse_ServingStatus }) => (res.status === HealthCheckResponse_ServingStatus.SERVING ? undefined : `expected SERVING, got ${res.status}`),
});

/** A valid key whose verification is cached before measuring starts. */
async function warmKey(ctx: BenchContext): Promise<string> {
  const { secret } = await ctx.seedKey();
  await ctx.transport.unary(AuthService.method.authenticate, undefined, 5_000, undefined, { credential: secret, clientIp: CLIENT_IP });
  return secret;
}

const authenticateValid = (credential: string) => ({
  request: { credential: `Bearer ${credential}`, clientIp: CLIENT_IP },
  expect: (res: { valid: boolean; code: Code }) => (res.valid && res.code === Code.VALID ? undefined : `expected VALID, got ${Code[res.code]}`),
  decision: { rpc: "Authenticate", code: "VALID" },
});

/** Sends one wrong secret for one of `targets` (real key ids, valid checksum); resolves to the outcome. */
function wrongSecretSender(ctx: BenchContext, targets: string[]): () => Promise<string> {
  let i = 0;
  return async () => {
    const forged = generateKey(ctx.server.config.prefixes.live, targets[i++ % targets.length]!).full;
    try {
      const res = await ctx.transport.unary(AuthService.method.authenticate, undefined, 2_000, undefined, { credential: forged, clientIp: CLIENT_IP });
      return Code[res.message.code] ?? String(res.message.code);
    } catch (err) {
      return `rpc_${RpcCode[ConnectError.from(err).code]}`;
    }
  };
}

/** Key ids the wrong-secret clients target: keys of their own tenant, so no other scenario's keys get throttled. */
const wrongSecretTargets = async (ctx: BenchContext) => (await ctx.seedKeys(4, "bench-wrong-secrets")).map((k) => k.keyId);

/**
 * Wrong secrets for real key ids with valid checksums pass every cheap check, and each costs a
 * database read and an argon2 verify. Worst case: the per-key-id failed-secret limiter is raised
 * so that it never kicks in and every wrong secret reaches argon2.
 */
const WORST_CASE_LIMITER = { TOLLGATE_FAILED_SECRETS_PER_MINUTE: "100000" };

/** Only the paced wrong secrets: the event-loop lag they cause on an otherwise idle server. */
function wrongSecretsAlone() {
  return customScenario({
    name: "wrong-secrets",
    title: `${WRONG_SECRETS_PER_SEC} wrong secrets/s alone (paced, open loop; latency and lag of those calls)`,
    serverEnv: WORST_CASE_LIMITER,
    setup: wrongSecretTargets,
    async run(ctx, targets) {
      const client = paced(WRONG_SECRETS_PER_SEC, wrongSecretSender(ctx, targets));
      await new Promise((r) => setTimeout(r, ctx.durationSec * 1000));
      const extra = await client.stop();
      const problems = extra.outcome_VALID ? [`${extra.outcome_VALID} wrong secrets were accepted`] : [];
      return { calls: extra.sent!, seconds: extra.sent! / extra.sentPerSec!, latenciesUs: client.latenciesUs, problems, extra };
    },
  });
}

/** Authenticate (cache warm) under h2load while the paced wrong secrets arrive alongside. */
function underWrongSecrets() {
  let targets: string[] = [];
  return loadScenario({
    name: "authenticate-under-wrong-secrets",
    title: `Authenticate (cache warm) while ${WRONG_SECRETS_PER_SEC} wrong secrets/s arrive; CPU/call includes their argon2 work`,
    method: AuthService.method.authenticate,
    baseline: "noop",
    serverEnv: WORST_CASE_LIMITER,
    async setup(ctx) {
      targets = await wrongSecretTargets(ctx);
      return authenticateValid(await warmKey(ctx));
    },
    background: async (ctx) => paced(WRONG_SECRETS_PER_SEC, wrongSecretSender(ctx, targets)),
  });
}

/** Every scenario, in the order odd rounds run them (even rounds reverse it; see order.ts). */
export const scenarios: Scenario[] = [
  loadScenario({
    name: "noop",
    title: "no-op: grpc.health.v1.Health/Check (same grpc-js adapter and call pipeline)",
    method: Health.method.check,
    setup: healthServing,
  }),

  loadScenario({
    name: "noop-deadline",
    title: "no-op as above, with the `grpc-timeout: 1S` header Envoy sends on a Check (what a deadline costs the transport)",
    method: Health.method.check,
    baseline: "noop",
    headers: ENVOY_HEADERS,
    setup: healthServing,
  }),

  loadScenario({
    name: "authenticate",
    title: "Authenticate, valid API key, cache warm",
    method: AuthService.method.authenticate,
    baseline: "noop",
    target: 0.9,
    setup: async (ctx) => authenticateValid(await warmKey(ctx)),
  }),

  ...moreScenarios,

  wrongSecretsAlone(),
  underWrongSecrets(),

  customScenario({
    name: "authenticate-cold",
    title: `Authenticate, cold miss: first call of each of ${COLD_KEYS} keys (DB read + argon2 verify each)`,
    setup: (ctx) => ctx.seedKeys(COLD_KEYS),
    async beforeRound(ctx, keys) {
      await ctx.invalidate(keys.map((k) => k.keyId));
      await new Promise((r) => setTimeout(r, 1_000)); // replicas evict within 1 s of a NOTIFY
    },
    async run(ctx, keys) {
      const latenciesUs: number[] = [];
      const problems = new Set<string>();
      let next = 0;
      const started = performance.now();
      const worker = async () => {
        while (next < keys.length) {
          const key = keys[next++]!;
          const t0 = performance.now();
          const res = await ctx.transport.unary(AuthService.method.authenticate, undefined, 30_000, undefined, { credential: key.secret, clientIp: CLIENT_IP });
          latenciesUs.push((performance.now() - t0) * 1000);
          if (res.message.code !== Code.VALID) problems.add(`a cold call answered ${Code[res.message.code]}`);
        }
      };
      await Promise.all(Array.from({ length: COLD_CONCURRENCY }, worker));
      return { calls: keys.length, seconds: (performance.now() - started) / 1000, latenciesUs, problems: [...problems] };
    },
    verify(before, after, keys) {
      // Every call must have been a real miss: one argon2 verify per key, none served from the cache.
      const verifies = delta(before, after, "tollgate_argon2_verify_seconds_count", { outcome: "match" });
      const problems = verifies === keys.length ? [] : [`expected ${keys.length} argon2 verifies, the server counted ${verifies}`];
      return { problems, extra: argon2Figures(before, after) };
    },
  }),
];
