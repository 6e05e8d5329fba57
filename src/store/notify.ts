import pg from "pg";
import type { Logger } from "../observability/logger.js";

/** The channel every cache invalidation travels on; payloads are `<kind>:<id>`. */
export const INVALIDATION_CHANNEL = "tollgate_invalidate";

export interface InvalidationListener {
  /** True while the LISTEN connection is up. */
  readonly connected: boolean;
  close(): Promise<void>;
}

export interface ListenerOptions {
  connectionString: string;
  logger: Logger;
  onMessage(payload: string): void;
  /** Called after (re)connecting: notifications may have been missed, so caches must be dropped. */
  onReset(): void;
  onStateChange?(connected: boolean): void;
  retryMs?: number;
}

/**
 * Keeps one dedicated connection LISTENing for invalidations, reconnecting with a capped backoff.
 * Every replica evicts a changed key within a notification's round trip (well under a second);
 * after a reconnect it drops everything, because what happened while it was away is unknown.
 */
export function listenForInvalidations(options: ListenerOptions): InvalidationListener {
  let client: pg.Client | undefined;
  let connected = false;
  let closed = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;

  const setConnected = (value: boolean) => {
    if (connected !== value) {
      connected = value;
      options.onStateChange?.(value);
    }
  };

  const scheduleReconnect = () => {
    setConnected(false);
    if (closed || timer) return;
    const delay = Math.min((options.retryMs ?? 250) * 2 ** attempt++, 5_000);
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delay);
    timer.unref();
  };

  async function connect(): Promise<void> {
    const c = new pg.Client({ connectionString: options.connectionString, connectionTimeoutMillis: 2_000, keepAlive: true, application_name: "tollgate-listener" });
    client = c;
    c.on("error", (err) => {
      options.logger.warn({ err }, "invalidation listener lost its connection");
      c.end().catch(() => undefined);
      if (client === c) scheduleReconnect();
    });
    c.on("end", () => {
      if (client === c) scheduleReconnect();
    });
    c.on("notification", (msg) => {
      if (msg.channel === INVALIDATION_CHANNEL && msg.payload) options.onMessage(msg.payload);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${INVALIDATION_CHANNEL}`);
      if (closed) return void (await c.end());
      attempt = 0;
      options.onReset();
      setConnected(true);
    } catch (err) {
      options.logger.warn({ err }, "invalidation listener could not connect");
      c.end().catch(() => undefined);
      if (client === c) scheduleReconnect();
    }
  }

  void connect();
  return {
    get connected() {
      return connected;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
