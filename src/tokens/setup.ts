import type pg from "pg";
import type { Config } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { KeyVerifier } from "../keys/verifier.js";
import { signingKeysRepo } from "../store/signing-keys-repo.js";
import { createKeyring, type Keyring } from "./keyring.js";
import { resolveMasterKey } from "./master-key.js";
import { createSigningKeys, type SigningKeys } from "./signing-keys.js";
import { createTokenIssuer, type TokenIssuer } from "./token-issuer.js";
import { createTokenVerifier, type TokenVerifier } from "./token-verifier.js";

/** NOTIFY payload prefix sent by the signing_keys trigger. */
const SIGNING_KEY_PAYLOAD = "signing-key:";
/** How often the automatic rotation schedule looks whether the active key is due. */
const SCHEDULE_CHECK_MS = 60_000;

/** The access-token parts of one replica, as the composition root wires them. */
export interface TokenParts {
  signingKeys: SigningKeys;
  keyring: Keyring;
  issuer: TokenIssuer;
  verifier: TokenVerifier;
  /** Handles an invalidation payload if it is ours; returns whether it was. */
  onInvalidation(payload: string): boolean;
  /** Notifications may have been missed: reload the keyring. */
  onReset(): void;
  stop(): void;
}

/** The shared parts access tokens are built on; `verifier` proves API keys and looks key rows up. */
export interface TokenSetupDeps {
  config: Config;
  pool: pg.Pool;
  logger: Logger;
  now: () => number;
  verifier: KeyVerifier;
}

/**
 * Brings up access tokens for one replica: resolves the master key, makes sure an active and a
 * next signing key exist, loads the keyring, and (when configured) runs the rotation schedule.
 * Every replica reloads its keyring on the signing_keys NOTIFY.
 */
export async function startTokens(deps: TokenSetupDeps): Promise<TokenParts> {
  const { config, pool, logger, now } = deps;
  const masterKey = await resolveMasterKey(config.masterKey, config.dataDir, (msg) => logger.warn(msg));
  const store = createSigningKeys({ pool, masterKey, now, config: config.tokens });
  await store.ensure();
  const keyring = createKeyring({
    load: () => signingKeysRepo.listKeys(pool, new Date(now()), false),
    masterKey,
    now,
    onError: (err, what) => logger.error({ err }, what),
  });
  await keyring.reload();
  // A rotation made here is visible here when it returns; other replicas follow on the NOTIFY.
  const signingKeys: SigningKeys = {
    ...store,
    rotate: (actor, algorithm) => store.rotate(actor, algorithm).then(async (r) => (await keyring.reload(), r)),
    rotateIfDue: () => store.rotateIfDue().then(async (r) => (r && (await keyring.reload()), r)),
  };
  const reload = () => void keyring.reload().catch((err: unknown) => logger.warn({ err }, "signing keys could not be reloaded"));
  const issuer = createTokenIssuer({ verifier: deps.verifier, keyring, config: config.tokens, now });
  const verifier = createTokenVerifier({ keyring, lookupKey: (keyId) => deps.verifier.lookup(keyId), config: config.tokens, now });

  let timer: NodeJS.Timeout | undefined;
  if (config.tokens.rotateEverySeconds > 0) {
    timer = setInterval(() => {
      signingKeys.rotateIfDue().then(
        (rotation) => rotation && logger.info({ kid: rotation.active.kid }, "signing key rotated on schedule"),
        (err: unknown) => logger.warn({ err }, "scheduled signing-key rotation failed"),
      );
    }, SCHEDULE_CHECK_MS);
    timer.unref();
  }
  return {
    signingKeys,
    keyring,
    issuer,
    verifier,
    onInvalidation(payload) {
      if (!payload.startsWith(SIGNING_KEY_PAYLOAD)) return false;
      reload();
      return true;
    },
    onReset: reload,
    stop: () => clearInterval(timer),
  };
}
