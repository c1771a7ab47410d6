import { TroupeError } from '../../core/errors';
import type { ModelProvider } from './types';

/** Model providers a Troupe worker can offer (`anthropic` needs ANTHROPIC_API_KEY on the worker). */
export const KNOWN_PROVIDERS = ['anthropic', 'scripted'] as const;

export type ResolvedModel = { provider: ModelProvider; model: string; qualified: string };

/**
 * Resolves an agent's `model` string (`<provider>:<model>`) to a provider. `default` means Claude when the worker
 * has an ANTHROPIC_API_KEY, else the built-in offline scripted scenario.
 */
export function createModelResolver(opts: {
  providers: Record<string, ModelProvider | undefined>;
  defaultModel: string;
  /** Per-role replacements of `default` (offline, the planner needs a scenario that plans). */
  defaultByRole?: Record<string, string>;
}): (model: string, role?: string) => ResolvedModel {
  return (requested, role) => {
    const qualified = requested === 'default' ? ((role !== undefined ? opts.defaultByRole?.[role] : undefined) ?? opts.defaultModel) : requested;
    const colon = qualified.indexOf(':');
    if (colon <= 0 || colon === qualified.length - 1) {
      throw new TroupeError('unknown_provider', `model "${requested}" must look like "<provider>:<model>", e.g. "anthropic:claude-sonnet-5-5"`);
    }
    const providerName = qualified.slice(0, colon);
    const provider = opts.providers[providerName];
    if (!provider) {
      const known = Object.entries(opts.providers)
        .filter(([, p]) => p)
        .map(([n]) => n);
      throw new TroupeError(
        'unknown_provider',
        `model provider "${providerName}" is not available on this worker (available: ${known.join(', ')})` +
          (providerName === 'anthropic' ? '; set ANTHROPIC_API_KEY' : ''),
      );
    }
    return { provider, model: qualified.slice(colon + 1), qualified };
  };
}
