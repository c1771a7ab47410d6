/** Blackboard visibility rules, pure so the API, the tools and the context builder agree on them. */
import type { BlackboardScope, MemoryScope } from './schemas';

/** Scopes an agent with this memoryScope may read: its own and every narrower one. `none` sees nothing. */
export function readableScopes(memoryScope: MemoryScope): BlackboardScope[] {
  switch (memoryScope) {
    case 'none':
      return [];
    case 'session':
      return ['session'];
    case 'project':
      return ['session', 'project'];
    case 'global':
      return ['session', 'project', 'global'];
  }
}

/** Whether an agent with this memoryScope may write an entry in `scope` (its own scope or a narrower one). */
export function canWriteScope(memoryScope: MemoryScope, scope: BlackboardScope): boolean {
  return readableScopes(memoryScope).includes(scope);
}

/** Project of a session that names none: project memory of such sessions is shared under this name. */
export const DEFAULT_PROJECT = 'default';

/** The key that places an entry of `scope` for a session: its id, its project, or "" for global. */
export function scopeKeyOf(scope: BlackboardScope, session: { id: string; project: string | null }): string {
  switch (scope) {
    case 'session':
      return session.id;
    case 'project':
      return session.project ?? DEFAULT_PROJECT;
    case 'global':
      return '';
  }
}
