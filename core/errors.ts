/**
 * One error base class with a stable `code`. The API maps codes to HTTP status once (api/errors.ts);
 * across the Temporal boundary the code travels as `ApplicationFailure.type`. Callers branch on codes,
 * never on message text.
 */
export const ERROR_CODES = [
  'bad_request',
  'unauthorized',
  'not_found',
  'conflict',
  'unavailable',
  'internal',
  'model_error',
  'model_output_invalid',
  'scenario_exhausted',
  'scenario_not_found',
  'unknown_provider',
  'tool_not_found',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class TroupeError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'TroupeError';
    this.code = code;
    this.details = details;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}
