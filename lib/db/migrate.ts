import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/**
 * Troupe's own migrator. `prisma migrate` needs a schema-engine binary that cannot be downloaded offline, so the SQL
 * migrations are kept in Prisma's layout (`prisma/migrations/<timestamp>_<name>/migration.sql`) and applied here.
 *
 * - Migrations run in name order, each in its own transaction, and are recorded in `_troupe_migrations`.
 * - A session-level advisory lock serialises concurrent migrators (API and worker starting together, parallel tests).
 * - An applied migration whose file changed (sha256 of the file's bytes) is refused: write a new migration instead.
 */

/** Default migrations folder: `<repo>/prisma/migrations`, resolved from this file, not from the cwd. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

export const MIGRATIONS_TABLE = '_troupe_migrations';

/** Constant pg_advisory_lock key shared by every Troupe migrator (advisory locks are per database). */
const MIGRATION_LOCK_KEY = '7477687573650001';

export type MigrateOptions = {
  migrationsDir?: string;
  log?: (msg: string) => void;
};

type MigrationFile = { name: string; sql: string; checksum: string };

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function databaseName(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) throw new Error('database URL has no database name');
  return name;
}

/** The same server, but the `postgres` maintenance database. */
function maintenanceUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = '/postgres';
  return url.toString();
}

/** Creates the database named by `databaseUrl` when it does not exist. Safe when another process creates it too. */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const name = databaseName(databaseUrl);
  // Fast path, and the only one for roles that may not connect to `postgres`: the database is already there.
  const probe = new pg.Client({ connectionString: databaseUrl });
  try {
    await probe.connect();
    await probe.end();
    return;
  } catch (err) {
    await probe.end().catch(() => {});
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000 invalid_catalog_name: no such database
  }
  const client = new pg.Client({ connectionString: maintenanceUrl(databaseUrl) });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount && found.rowCount > 0) return;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
    } catch (err) {
      // 42P04 duplicate_database; 23505 unique_violation on pg_database when two creators race.
      const code = (err as { code?: string }).code;
      if (code !== '42P04' && code !== '23505') throw err;
    }
  } finally {
    await client.end();
  }
}

async function readMigrations(dir: string): Promise<MigrationFile[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new Error(`cannot read migrations folder ${dir}: ${(err as Error).message}`);
  }
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const file = path.join(dir, name, 'migration.sql');
    const exists = await stat(file).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!exists) throw new Error(`migration ${name} has no migration.sql (${file})`);
    const sql = await readFile(file, 'utf8');
    files.push({ name, sql, checksum: sha256(sql) });
  }
  return files;
}

/** Drops the database named in `databaseUrl`, closing its connections (scratch databases of tests, bench, recorders). */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: maintenanceUrl(databaseUrl) });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(databaseName(databaseUrl))} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/**
 * Applies pending migrations to the database at `databaseUrl` (which must exist; see ensureDatabase).
 * Returns the names applied by this call, in order.
 */
export async function migrate(databaseUrl: string, opts: MigrateOptions = {}): Promise<{ applied: string[] }> {
  const dir = opts.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
  const log = opts.log ?? (() => {});
  const migrations = await readMigrations(dir);

  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'troupe-migrate' });
  await client.connect();
  const applied: string[] = [];
  try {
    // Session-level lock: held across the per-migration transactions, released in `finally` (or when the
    // connection dies, so a crashed migrator never blocks the next one).
    await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${quoteIdent(MIGRATIONS_TABLE)} (
           "name" TEXT NOT NULL PRIMARY KEY,
           "checksum" TEXT NOT NULL,
           "applied_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
         )`,
      );
      const done = await client.query<{ name: string; checksum: string }>(
        `SELECT "name", "checksum" FROM ${quoteIdent(MIGRATIONS_TABLE)} ORDER BY "name"`,
      );
      const appliedChecksums = new Map(done.rows.map((r) => [r.name, r.checksum]));
      const known = new Set(migrations.map((m) => m.name));

      for (const m of migrations) {
        const previous = appliedChecksums.get(m.name);
        if (previous !== undefined && previous !== m.checksum) {
          throw new Error(
            `migration ${m.name} was already applied but its migration.sql changed ` +
              `(applied checksum ${previous}, file checksum ${m.checksum}). ` +
              `Never edit an applied migration: restore the file and add a new migration instead.`,
          );
        }
      }
      for (const name of appliedChecksums.keys()) {
        if (!known.has(name)) log(`warning: applied migration ${name} is not in ${dir} (database is newer than this code?)`);
      }

      for (const m of migrations) {
        if (appliedChecksums.has(m.name)) continue;
        log(`applying migration ${m.name}`);
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query(`INSERT INTO ${quoteIdent(MIGRATIONS_TABLE)} ("name", "checksum") VALUES ($1, $2)`, [
            m.name,
            m.checksum,
          ]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.name);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]).catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
  if (applied.length === 0) log('database is up to date');
  return { applied };
}
