/** `npm run migrate`: creates the database when missing and applies pending migrations from prisma/migrations. */
import { ensureDatabase, migrate } from '../lib/db/migrate';

const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/troupe';

function redact(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  console.log(`migrating ${redact(databaseUrl)}`);
  await ensureDatabase(databaseUrl);
  const { applied } = await migrate(databaseUrl, { log: (msg) => console.log(`  ${msg}`) });
  if (applied.length === 0) console.log('nothing to apply');
  else console.log(`applied ${applied.length} migration(s): ${applied.join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(`migrate failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
