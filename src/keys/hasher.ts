import { hash, verify, type Algorithm } from "@node-rs/argon2";
import type { Argon2Params } from "../config/config.js";
import { unavailable } from "../domain/errors.js";

// `Algorithm` is an ambient const enum, which isolated modules cannot read: Argon2id is 2.
const ARGON2ID = 2 as Algorithm;

/** Hashes and verifies secrets with argon2id on the libuv thread pool, never on the event loop. */
export interface SecretHasher {
  hash(secret: string): Promise<string>;
  /** Constant-time by construction (argon2 recomputes and compares the whole digest). */
  verify(phc: string, secret: string): Promise<boolean>;
  /** True when a stored hash used weaker parameters than configured and should be replaced. */
  needsRehash(phc: string): boolean;
  /** Verifications waiting for a slot now. */
  readonly queued: number;
}

export interface HasherOptions {
  params: Argon2Params;
  /** Most verifications at once; more would only queue inside libuv and add latency for everyone. */
  concurrency: number;
  /** Most waiting verifications; beyond that the call fails fast as UNAVAILABLE (overload). */
  queueLimit: number;
  onVerify?: (seconds: number, ok: boolean) => void;
  /** Reports the number of waiting verifications whenever it changes. */
  onQueue?: (depth: number) => void;
}

/** Creates the argon2id hasher with bounded concurrency and a bounded queue. */
export function createHasher(options: HasherOptions): SecretHasher {
  const { params } = options;
  const hashOptions = { algorithm: ARGON2ID, memoryCost: params.memoryKiB, timeCost: params.iterations, parallelism: params.parallelism };
  let running = 0;
  const waiting: Array<() => void> = [];

  async function slot<T>(fn: () => Promise<T>): Promise<T> {
    if (running >= options.concurrency) {
      if (waiting.length >= options.queueLimit) throw unavailable("OVERLOADED", "too many key verifications in progress; retry shortly");
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        options.onQueue?.(waiting.length);
      });
      options.onQueue?.(waiting.length);
    }
    running++;
    try {
      return await fn();
    } finally {
      running--;
      waiting.shift()?.();
    }
  }

  return {
    hash: (secret) => slot(() => hash(secret, hashOptions)),
    verify: (phc, secret) =>
      slot(async () => {
        const started = performance.now();
        const ok = await verify(phc, secret).catch(() => false);
        options.onVerify?.((performance.now() - started) / 1000, ok);
        return ok;
      }),
    needsRehash(phc) {
      const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc);
      if (!m) return true;
      return Number(m[1]) < params.memoryKiB || Number(m[2]) < params.iterations || Number(m[3]) < params.parallelism;
    },
    get queued() {
      return waiting.length;
    },
  };
}
