import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more forks would only fight over argon2 and PostgreSQL.
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
  },
});
