import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/store/embedded.js";
import { postgresReachable as reachable } from "../../src/store/db.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A superuser URL of the PostgreSQL the tests create their databases in. */
    pgAdminUrl: string;
  }
}


/**
 * Uses TEST_DATABASE_URL, else the local PostgreSQL on 127.0.0.1:5432, else starts an embedded
 * one for the run. Each test file then creates its own fresh database in it.
 */
export default async function setup(project: TestProject) {
  let embedded: EmbeddedDatabase | undefined;
  let dir: string | undefined;
  let url = process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
  if (!(await reachable(url))) {
    dir = await mkdtemp(join(tmpdir(), "tollgate-test-pg-"));
    embedded = await startEmbeddedPostgres(dir);
    url = embedded.connectionString;
  }
  project.provide("pgAdminUrl", url);
  return async () => {
    await embedded?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  };
}
