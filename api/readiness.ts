import type { Connection } from '@temporalio/client';
import type { Db } from '../lib/db/client';
import type { Readiness } from './app';

/** /readyz: Postgres answers a query and Temporal's health service answers. */
export function createReadiness(db: Db, connection: Connection): Readiness {
  return async () => {
    const [pg, temporal] = await Promise.allSettled([db.$queryRaw`SELECT 1`, connection.healthService.check({})]);
    const status = (r: PromiseSettledResult<unknown>) =>
      r.status === 'fulfilled' ? { ok: true } : { ok: false, error: r.reason instanceof Error ? r.reason.message : String(r.reason) };
    return { postgres: status(pg), temporal: status(temporal) };
  };
}
