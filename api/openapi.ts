import { z } from 'zod';
import { CreateSessionBody, ErrorBody, SendMessageBody, Session, SessionPage, TraceEvent } from '../core/schemas';

/** OpenAPI 3.1 document generated from the same zod schemas that validate requests. */
export function openApiDocument(): Record<string, unknown> {
  const schema = (s: z.ZodType) => {
    const out = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    delete out.$schema;
    return out;
  };
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const json = (name: string) => ({ content: { 'application/json': { schema: ref(name) } } });
  const errors = {
    '400': { description: 'invalid input; details name the bad fields', ...json('Error') },
    '401': { description: 'missing or invalid bearer token', ...json('Error') },
    '404': { description: 'unknown id', ...json('Error') },
    '409': { description: 'the session has ended', ...json('Error') },
  };
  const idParam = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }];
  return {
    openapi: '3.1.0',
    info: { title: 'Troupe API', version: '0.1.0', description: 'Durable multi-agent sessions on Temporal.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Session: schema(Session),
        SessionPage: schema(SessionPage),
        CreateSessionBody: schema(CreateSessionBody),
        SendMessageBody: schema(SendMessageBody),
        TraceEvent: schema(TraceEvent),
        Error: schema(ErrorBody),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/sessions': {
        post: {
          summary: 'Start a session',
          requestBody: { required: true, ...json('CreateSessionBody') },
          responses: { '201': { description: 'the new session', ...json('Session') }, ...errors },
        },
        get: {
          summary: 'List sessions, newest first',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
            { name: 'status', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'a page of sessions', ...json('SessionPage') }, ...errors },
        },
      },
      '/v1/sessions/{id}': {
        get: { summary: 'Get a session', parameters: idParam, responses: { '200': { description: 'the session', ...json('Session') }, ...errors } },
      },
      '/v1/sessions/{id}/events': {
        get: {
          summary: 'Stream the session trace (Server-Sent Events; `id:` is the seq; resumes after Last-Event-ID or ?after=)',
          parameters: [...idParam, { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0 } }, { name: 'Last-Event-ID', in: 'header', schema: { type: 'integer' } }],
          responses: { '200': { description: 'text/event-stream of TraceEvent', content: { 'text/event-stream': { schema: ref('TraceEvent') } } }, ...errors },
        },
      },
      '/v1/sessions/{id}/messages': {
        post: {
          summary: 'Send the next user message (resumes a session waiting for input)',
          parameters: idParam,
          requestBody: { required: true, ...json('SendMessageBody') },
          responses: { '202': { description: 'accepted', ...json('Session') }, ...errors },
        },
      },
      '/v1/sessions/{id}/cancel': {
        post: { summary: 'Cancel a session and its in-flight work', parameters: idParam, responses: { '202': { description: 'cancel requested', ...json('Session') }, ...errors } },
      },
      '/v1/sessions/{id}/close': {
        post: { summary: 'End a session normally (status done)', parameters: idParam, responses: { '202': { description: 'close requested', ...json('Session') }, ...errors } },
      },
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'ok' } } } },
      '/readyz': { get: { summary: 'Temporal and Postgres reachable', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
    },
  };
}
