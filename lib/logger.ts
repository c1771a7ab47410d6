import { pino, type Logger } from 'pino';

export type { Logger };

/** Field names whose values never reach a log line, at the top level and one level down (`*.password`). */
const SECRET_FIELDS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'clientSecret',
  'client_secret',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'apiKey',
  'api_key',
  'apikey',
  'accessKey',
  'access_key',
  'secretKey',
  'secret_key',
  'secretAccessKey',
  'privateKey',
  'private_key',
  'authorization',
  'cookie',
  'credentials',
  'databaseUrl',
  'apiTokens',
  'secrets',
];
const REDACT_PATHS = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]),
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'config.anthropic.apiKey',
];

/** The one logger: JSON lines on stdout. Anything about a session logs through `forSession`, so `sessionId` is on the line. */
export function createLogger(opts: { level?: string; name: string }): Logger {
  return pino({
    name: opts.name,
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { pid: process.pid, service: opts.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  });
}

export function forSession(logger: Logger, sessionId: string): Logger {
  return logger.child({ sessionId });
}
