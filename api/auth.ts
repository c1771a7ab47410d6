import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { TroupeError } from '../core/errors';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** `Authorization: Bearer <token>` against the configured tokens. There is no open mode. */
export function requireToken(tokens: readonly string[]): RequestHandler {
  if (tokens.length === 0) throw new Error('no API tokens configured: set TROUPE_API_TOKENS (comma-separated)');
  const allowed = tokens.map(digest);
  return (req, _res, next) => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    const given = match?.[1] ? digest(match[1]) : undefined;
    // Compare digests in constant time against every token, so timing says nothing about which one is close.
    const ok = given !== undefined && allowed.reduce((acc, t) => timingSafeEqual(t, given) || acc, false);
    if (!ok) {
      next(new TroupeError('unauthorized', header ? 'invalid API token' : 'missing Authorization: Bearer <token> header'));
      return;
    }
    next();
  };
}
