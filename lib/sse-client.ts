/** A small Server-Sent Events reader (for the demo, the CLI and tests): what EventSource sees, without reconnects. */
export type SseMessage = { id?: string; event?: string; data: string };

export async function* readSse(url: string, init: RequestInit & { signal?: AbortSignal }): AsyncGenerator<SseMessage> {
  const res = await fetch(url, init);
  if (!res.ok || !res.body) throw new Error(`SSE request failed: ${res.status} ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let sep: number;
    while ((sep = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, sep);
      buffer = buffer.slice(sep + 2);
      const msg: SseMessage = { data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') msg.id = value;
        else if (field === 'event') msg.event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0 && msg.id === undefined && msg.event === undefined) continue;
      msg.data = data.join('\n');
      yield msg;
    }
  }
}
