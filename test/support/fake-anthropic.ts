import { createServer } from 'node:http';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A local stand-in for the Anthropic Messages API (POST /v1/messages), streaming included, so the real SDK can be
 * tested without a network. Each request is answered by the next scripted turn, or by the script function.
 */

export const FAKE_ANTHROPIC_KEY = 'sk-ant-fake-test-key';

export type FakeBlock =
  /** A string is streamed in word-sized deltas; an array is streamed one element per delta, as given. */
  | { type: 'text'; text: string | string[] }
  /** `partialJson` streams these input_json_delta chunks verbatim (e.g. cut-off JSON) instead of `input`, split. */
  | { type: 'tool_use'; id?: string; name: string; input: unknown; partialJson?: string[] };

export type FakeTurn = {
  content?: FakeBlock[];
  /** Default: 'tool_use' when the turn has a tool_use block, else 'end_turn'. null is sent as null. */
  stopReason?: string | null;
  usage?: { inputTokens: number; outputTokens: number };
  /** Default: the model the request asked for. */
  model?: string;
  /** Pause before each streamed event. */
  chunkDelayMs?: number;
  /** Answer with this HTTP status and Anthropic's error body instead of a message. */
  error?: { status: number; type?: string; message?: string };
  /** Stream the content deltas, then send an SSE `error` event and end (what an overload mid-stream looks like). */
  streamError?: { type: string; message: string };
  /** Send the start of the answer (streaming: message_start and the content deltas) and never finish. */
  hang?: boolean;
};

export type FakeRequestBody = {
  model: string;
  max_tokens: number;
  stream?: boolean;
  system?: unknown;
  messages: unknown[];
  tools?: unknown[];
  [key: string]: unknown;
};

export type RecordedRequest = {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: FakeRequestBody;
  /** The connection closed before the answer was complete: the client aborted (or close() cut a hanging answer). */
  clientAborted: boolean;
};

export type FakeAnthropic = { url: string; requests: RecordedRequest[]; close(): Promise<void> };

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
};

export async function startFakeAnthropic(
  script: FakeTurn[] | ((req: RecordedRequest) => FakeTurn),
  opts: { apiKey?: string } = {},
): Promise<FakeAnthropic> {
  const apiKey = opts.apiKey ?? FAKE_ANTHROPIC_KEY;
  const requests: RecordedRequest[] = [];
  let nextTurn = 0;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (req.method !== 'POST' || path !== '/v1/messages') {
        return sendError(res, 404, undefined, `fake-anthropic: no route ${req.method} ${path}`);
      }
      let body: FakeRequestBody;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as FakeRequestBody;
      } catch {
        return sendError(res, 400, undefined, 'fake-anthropic: request body is not JSON');
      }
      const recorded: RecordedRequest = { method: req.method, path, headers: req.headers, body, clientAborted: false };
      requests.push(recorded);
      res.on('close', () => {
        if (!res.writableFinished) recorded.clientAborted = true;
      });

      if (apiKeyOf(req.headers) !== apiKey) return sendError(res, 401, undefined, 'invalid x-api-key');

      // Fail loudly, and non-retryably, when a test runs out of scripted turns or its script throws.
      let turn: FakeTurn | undefined;
      try {
        turn = typeof script === 'function' ? script(recorded) : script[nextTurn++];
      } catch (error) {
        return sendError(res, 400, undefined, `fake-anthropic: script threw: ${String(error)}`);
      }
      if (!turn) {
        return sendError(res, 400, undefined, `fake-anthropic: no scripted turn left for request #${requests.length}`);
      }
      if (turn.error) return sendError(res, turn.error.status, turn.error.type, turn.error.message);
      if (body.stream) return void streamTurn(res, turn, body.model).catch(() => res.destroy());
      if (!turn.hang) sendJson(res, 200, messageOf(turn, body.model, true));
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections(); // hanging streams included
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/**
 * The key a request authenticated with. The API takes `x-api-key`; SDK 1.x sends the key as
 * `Authorization: Bearer <key>` instead, so the fake accepts either.
 */
export function apiKeyOf(headers: IncomingHttpHeaders): string | undefined {
  const xApiKey = headers['x-api-key'];
  if (typeof xApiKey === 'string') return xApiKey;
  const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? '');
  return bearer?.[1];
}

let ids = 0;
const nextId = (prefix: string) => `${prefix}_fake${String(++ids).padStart(6, '0')}`;

type WireBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: unknown };

function wireBlockOf(block: FakeBlock): WireBlock {
  return block.type === 'text'
    ? { type: 'text', text: typeof block.text === 'string' ? block.text : block.text.join('') }
    : { type: 'tool_use', id: block.id ?? nextId('toolu'), name: block.name, input: block.input };
}

/** The complete message, as a non-streaming answer has it (`final`), or as message_start has it (empty). */
function messageOf(turn: FakeTurn, requestedModel: string, final: boolean) {
  const content = turn.content ?? [];
  const stopReason =
    turn.stopReason !== undefined ? turn.stopReason
    : content.some((b) => b.type === 'tool_use') ? 'tool_use'
    : 'end_turn';
  const usage = turn.usage ?? { inputTokens: 10, outputTokens: 5 };
  return {
    id: nextId('msg'),
    type: 'message',
    role: 'assistant',
    model: turn.model ?? requestedModel,
    content: final ? content.map(wireBlockOf) : [],
    stop_reason: final ? stopReason : null,
    stop_sequence: null,
    usage: { input_tokens: usage.inputTokens, output_tokens: final ? usage.outputTokens : 1 },
  };
}

/** Writes the event sequence the real API sends. Stops quietly when the client goes away (an abort). */
async function streamTurn(res: ServerResponse, turn: FakeTurn, requestedModel: string): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'request-id': nextId('req'),
  });
  const open = () => !res.writableEnded && !res.destroyed;
  const send = async (event: string, data: object) => {
    if (turn.chunkDelayMs) await sleep(turn.chunkDelayMs);
    if (open()) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  const final = messageOf(turn, requestedModel, true);
  await send('message_start', { type: 'message_start', message: messageOf(turn, requestedModel, false) });
  await send('ping', { type: 'ping' });
  const blocks = turn.content ?? [];
  for (const [index, block] of blocks.entries()) {
    const wire = final.content[index]!;
    if (block.type === 'text') {
      await send('content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
      const deltas = typeof block.text === 'string' ? block.text.split(/(?<=\s)/) : block.text;
      for (const text of deltas) {
        await send('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text } });
      }
    } else {
      const startBlock = { ...wire, input: {} };
      await send('content_block_start', { type: 'content_block_start', index, content_block: startBlock });
      for (const partial_json of ['', ...(block.partialJson ?? splitInThree(JSON.stringify(block.input)))]) {
        const delta = { type: 'input_json_delta', partial_json };
        await send('content_block_delta', { type: 'content_block_delta', index, delta });
      }
    }
    if (turn.hang) continue;
    await send('content_block_stop', { type: 'content_block_stop', index });
    if (index === 0) await send('ping', { type: 'ping' });
  }
  if (turn.hang) return; // leave the response open; close() or the client's abort ends it
  if (turn.streamError) {
    await send('error', { type: 'error', error: turn.streamError });
    if (open()) res.end();
    return;
  }
  await send('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: final.stop_reason, stop_sequence: null },
    usage: { output_tokens: final.usage.output_tokens },
  });
  await send('message_stop', { type: 'message_stop' });
  if (open()) res.end();
}

/** The real API sends tool input in several arbitrary pieces; so do we, to prove the client reassembles them. */
function splitInThree(json: string): string[] {
  const size = Math.max(1, Math.ceil(json.length / 3));
  const parts: string[] = [];
  for (let i = 0; i < json.length; i += size) parts.push(json.slice(i, i + size));
  return parts;
}

function sendError(res: ServerResponse, status: number, type: string | undefined, message: string | undefined) {
  sendJson(res, status, {
    type: 'error',
    error: { type: type ?? ERROR_TYPES[status] ?? 'api_error', message: message ?? `fake error ${status}` },
    request_id: nextId('req'),
  });
}

function sendJson(res: ServerResponse, status: number, body: object) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': nextId('req') });
  res.end(JSON.stringify(body));
}
