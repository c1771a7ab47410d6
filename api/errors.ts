import type { ErrorRequestHandler, RequestHandler } from 'express';
import { type ZodError } from 'zod';
import { TroupeError, type ErrorCode } from '../core/errors';
import type { Logger } from '../lib/logger';

/** The one place error codes become HTTP statuses. */
const STATUS: Partial<Record<ErrorCode, number>> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
};

export function zodDetails(err: ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: i.path.join('.') || '(body)', message: i.message }));
}

/** Parses with zod; a failure becomes a 400 whose details name every bad field. */
export function parseOr400<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: ZodError } }, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const details = zodDetails(r.error);
    throw new TroupeError('bad_request', `invalid ${what}: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`, details);
  }
  return r.data;
}

export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(new TroupeError('not_found', `no route ${req.method} ${req.path}`));
};

export function errorMiddleware(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    let status = 500;
    let body: { code: string; message: string; details?: unknown };
    if (err instanceof TroupeError) {
      status = STATUS[err.code] ?? 500;
      body = { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) };
    } else if (typeof err === 'object' && err !== null && (err as { type?: string }).type === 'entity.parse.failed') {
      status = 400;
      body = { code: 'bad_request', message: 'request body is not valid JSON' };
    } else if (typeof err === 'object' && err !== null && (err as { type?: string }).type === 'entity.too.large') {
      status = 413;
      body = { code: 'bad_request', message: 'request body is too large' };
    } else {
      body = { code: 'internal', message: 'internal error' };
    }
    if (status >= 500) logger.error({ err, method: req.method, path: req.path }, 'request failed');
    if (res.headersSent) return;
    res.status(status).json({ error: body });
  };
}
