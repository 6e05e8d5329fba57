/**
 * gRPC health checking (`grpc.health.v1.Health`): a small status registry plus a connect
 * `ServiceImpl` that serves `Check` and the server-streaming `Watch` from it.
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { HealthCheckRequest } from "../gen/grpc/health/v1/health_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";

/** Serving status of a service, as defined by the health protocol. */
export type ServingStatus = HealthCheckResponse_ServingStatus;

/**
 * Called after a service's status changed. `status` is `undefined` when the service was
 * removed with {@link HealthStatus.clear}, i.e. it is now unknown.
 */
export type HealthListener = (service: string, status: ServingStatus | undefined) => void;

/**
 * Per-service serving status, keyed by fully-qualified service name; the empty name `""` is the
 * server as a whole, as the health protocol prescribes. Listeners are notified synchronously and
 * only on actual changes, so setting the same status twice is free for watchers.
 */
export class HealthStatus {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<HealthListener>();

  /**
   * Creates the registry with initial statuses; by default the overall server (`""`) is
   * `SERVING`, matching what gRPC servers report once they are listening.
   */
  constructor(initial: Iterable<readonly [string, ServingStatus]> = [["", HealthCheckResponse_ServingStatus.SERVING]]) {
    for (const [service, status] of initial) {
      this.set(service, status);
    }
  }

  /** Returns the status of `service`, or `undefined` if it was never registered (or cleared). */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /**
   * Sets the status of `service` and notifies listeners if it changed. `SERVICE_UNKNOWN` is a
   * response-only value of `Watch`, so it is rejected here; use {@link clear} to forget a service.
   */
  set(service: string, status: ServingStatus): void {
    if (status === HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN) {
      throw new RangeError("SERVICE_UNKNOWN cannot be set; use clear() to forget a service");
    }
    if (this.#statuses.get(service) === status) {
      return;
    }
    this.#statuses.set(service, status);
    this.#notify(service, status);
  }

  /** Forgets `service`: `Check` then fails with NOT_FOUND and watchers see `SERVICE_UNKNOWN`. */
  clear(service: string): void {
    if (this.#statuses.delete(service)) {
      this.#notify(service, undefined);
    }
  }

  /**
   * Registers a change listener and returns the function that removes it. Listeners must not
   * throw: they run inside {@link set}, and an exception would escape to its caller.
   */
  subscribe(listener: HealthListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Number of registered listeners; exposed so leaks (e.g. of abandoned watches) are observable. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Calls every listener; iterates over a snapshot so listeners may unsubscribe while notified. */
  #notify(service: string, status: ServingStatus | undefined): void {
    for (const listener of [...this.#listeners]) {
      listener(service, status);
    }
  }
}

/**
 * Creates the `grpc.health.v1.Health` implementation backed by `status`. `Check` fails with
 * NOT_FOUND for unknown services. `Watch` first sends the current status (`SERVICE_UNKNOWN` for
 * unknown services), then a message whenever it changes, until the client cancels.
 */
export function createHealthService(status: HealthStatus): ServiceImpl<typeof Health> {
  return {
    check(request) {
      const current = status.get(request.service);
      if (current === undefined) {
        throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
      }
      return { status: current };
    },
    watch(request, context) {
      return watchStatus(status, request, context);
    },
  };
}

/**
 * Streams the status of one service. Like grpc-go, it only guarantees the latest status is
 * delivered: changes that happen while the client is slow to read are coalesced, so a stalled
 * watcher holds one pending value rather than an unbounded queue. The listener and the abort
 * handler are removed when the call ends for any reason, so cancelled watches leak nothing.
 */
async function* watchStatus(status: HealthStatus, request: HealthCheckRequest, context: HandlerContext) {
  const { signal } = context;
  const service = request.service;
  let latest: ServingStatus = status.get(service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
  let wake: (() => void) | undefined;
  const unsubscribe = status.subscribe((changed, next) => {
    if (changed === service) {
      latest = next ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
      wake?.();
    }
  });
  const onAbort = (): void => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    let sent: ServingStatus | undefined;
    while (!signal.aborted) {
      if (latest !== sent) {
        sent = latest;
        yield { status: sent };
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}
