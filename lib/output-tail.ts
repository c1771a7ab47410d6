/**
 * Keeps the last `max` non-empty lines a child process printed, for error messages that say what it said before it
 * failed. `onLine` sees every line as it arrives (e.g. to stream a build's progress to the log).
 */
export function outputTail(max: number, onLine?: (line: string) => void): { lines: string[]; remember: (chunk: Buffer) => void } {
  const lines: string[] = [];
  const remember = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      lines.push(line);
      if (lines.length > max) lines.shift();
      onLine?.(line);
    }
  };
  return { lines, remember };
}
