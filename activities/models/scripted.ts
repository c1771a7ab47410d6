import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { TroupeError } from '../../core/errors';
import { ModelResponse, textOf, type ChatMessage } from '../../core/model';
import type { ModelProvider, ModelRequest, StreamHooks } from './types';

/**
 * A deterministic model driven by a scenario file (YAML or JSON), for tests and offline use.
 * The turn it plays is the number of assistant messages already in the conversation, so it is stateless:
 * a retried or restarted call plays the same turn again. Past the last turn it fails loudly, unless the
 * scenario says `loop: true`.
 */
const ScriptedTurn = z
  .object({
    /** Text of the reply; `{{input}}` is replaced with the last user text. */
    text: z.string().optional(),
    toolCalls: z.array(z.object({ name: z.string().min(1), input: z.record(z.string(), z.unknown()) }).strict()).default([]),
    /** Wait this long before answering (honours cancellation). */
    delayMs: z.number().int().min(0).default(0),
    /** Pause between streamed chunks. */
    chunkDelayMs: z.number().int().min(0).default(0),
    /** Fail this many attempts of this turn with a retryable error before succeeding (retry tests). */
    failAttempts: z.number().int().min(0).default(0),
    /** Fail this turn with a non-retryable error in the first N attempts of a task (task-retry tests). */
    failTaskAttempts: z.number().int().min(0).default(0),
  })
  .strict()
  .refine((t) => t.text !== undefined || t.toolCalls.length > 0, 'a turn needs text or toolCalls');

export const Scenario = z
  .object({
    name: z.string().min(1),
    description: z.string().optional(),
    loop: z.boolean().default(false),
    turns: z.array(ScriptedTurn).min(1),
  })
  .strict();
export type Scenario = z.infer<typeof Scenario>;

export const BUILTIN_SCENARIO_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../scenarios');

/** Parsed scenarios by file, kept while the file's mtime is unchanged (a model call must not re-parse YAML). */
const parsedScenarios = new Map<string, { mtimeMs: number; scenario: Scenario }>();

export function loadScenario(name: string, dirs: readonly string[]): Scenario {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new TroupeError('scenario_not_found', `invalid scenario name "${name}"`);
  for (const dir of [...dirs, BUILTIN_SCENARIO_DIR]) {
    for (const ext of ['.yaml', '.yml', '.json']) {
      const file = path.join(dir, name + ext);
      const stat = statSync(file, { throwIfNoEntry: false });
      if (!stat?.isFile()) continue;
      const cached = parsedScenarios.get(file);
      if (cached?.mtimeMs === stat.mtimeMs) return cached.scenario;
      const raw: unknown = ext === '.json' ? JSON.parse(readFileSync(file, 'utf8')) : YAML.parse(readFileSync(file, 'utf8'));
      const parsed = Scenario.safeParse(raw);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
        throw new TroupeError('scenario_not_found', `scenario file ${file} is invalid: ${problems}`);
      }
      parsedScenarios.set(file, { mtimeMs: stat.mtimeMs, scenario: parsed.data });
      return parsed.data;
    }
  }
  throw new TroupeError('scenario_not_found', `no scenario "${name}" in ${[...dirs, BUILTIN_SCENARIO_DIR].join(', ')}`);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason ?? new Error('aborted'));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason ?? new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function lastUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role === 'user') {
      const t = textOf(m.content);
      if (t.length > 0) return t;
    }
  }
  return '';
}

const approxTokens = (s: string) => Math.ceil(s.length / 4);

export function createScriptedProvider(opts: { scenarioDirs: readonly string[]; attempt?: () => number }): ModelProvider {
  return {
    name: 'scripted',
    async complete(request: ModelRequest, hooks: StreamHooks) {
      const scenario = loadScenario(request.model, opts.scenarioDirs);
      const played = request.messages.filter((m) => m.role === 'assistant').length;
      if (!scenario.loop && played >= scenario.turns.length) {
        throw new TroupeError(
          'scenario_exhausted',
          `scripted scenario "${scenario.name}" has ${scenario.turns.length} turns and all were played; the model was asked for turn ${played + 1}`,
        );
      }
      const index = played % scenario.turns.length;
      const turn = scenario.turns[index]!;
      if (turn.delayMs > 0) await sleep(turn.delayMs, hooks.signal);
      const attempt = opts.attempt?.() ?? 1;
      if (attempt <= turn.failAttempts) {
        throw new TroupeError('model_error', `scripted failure of turn ${index + 1}, attempt ${attempt}`, { retryable: true });
      }
      if ((request.meta?.taskAttempt ?? 1) <= turn.failTaskAttempts) {
        throw new TroupeError('model_error', `scripted failure of turn ${index + 1} in task attempt ${request.meta?.taskAttempt ?? 1}`, { retryable: false });
      }
      const content: ModelResponse['content'] = [];
      if (turn.text !== undefined) {
        const text = turn.text.replaceAll('{{input}}', lastUserText(request.messages));
        for (const chunk of text.match(/\S+\s*|\s+/g) ?? []) {
          if (turn.chunkDelayMs > 0) await sleep(turn.chunkDelayMs, hooks.signal);
          hooks.onTextDelta(chunk);
        }
        content.push({ type: 'text', text });
      }
      turn.toolCalls.forEach((call, i) => {
        content.push({ type: 'tool_use', id: `toolu_scripted_${played}_${i}`, name: call.name, input: call.input });
      });
      const inputChars = JSON.stringify(request.messages).length + request.system.length;
      return ModelResponse.parse({
        model: `scripted:${scenario.name}`,
        content,
        stopReason: turn.toolCalls.length > 0 ? 'tool_use' : 'end_turn',
        usage: { inputTokens: Math.ceil(inputChars / 4), outputTokens: approxTokens(turn.text ?? '') + 10 * turn.toolCalls.length },
      });
    },
  };
}
