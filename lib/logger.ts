import { pino, type Logger } from 'pino';

export type { Logger };

/** The one logger: JSON lines on stdout. Anything about a session logs through `forSession`, so `sessionId` is on the line. */
export function createLogger(opts: { level?: string; name: string }): Logger {
  return pino({
    name: opts.name,
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { pid: process.pid, service: opts.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['apiKey', '*.apiKey', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization'],
      censor: '[redacted]',
    },
  });
}

export function forSession(logger: Logger, sessionId: string): Logger {
  return logger.child({ sessionId });
}
