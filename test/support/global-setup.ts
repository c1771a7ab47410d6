/**
 * Starts the real services the integration tests use, once per `npm test`: a Temporal dev server (or the cluster in
 * TEMPORAL_ADDRESS) and a fresh Postgres database, migrated. Tests get the addresses through `inject`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDevServer, type DevServer } from '../../lib/dev-server';
import { dropDatabase, ensureDatabase, migrate } from '../../lib/db/migrate';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    databaseUrl: string;
  }
}

const BASE_URL = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';

let server: DevServer | undefined;
let stateDir: string | undefined;

export async function setup(project: TestProject) {
  const dbName = `troupe_test_${process.pid}`;
  const databaseUrl = `${BASE_URL}/${dbName}`;
  await dropDatabase(databaseUrl);
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl);

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  if (!temporalAddress) {
    stateDir = mkdtempSync(path.join(os.tmpdir(), 'troupe-test-temporal-'));
    server = await startDevServer({ dbFilename: path.join(stateDir, 'temporal.db'), ui: false, log: (m) => console.error(`[temporal] ${m}`) });
    temporalAddress = server.address;
  }
  project.provide('temporalAddress', temporalAddress);
  project.provide('databaseUrl', databaseUrl);

  return async () => {
    await server?.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    await dropDatabase(databaseUrl);
  };
}
