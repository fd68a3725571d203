import { describe, expect, it } from 'vitest';
import { droppedLinesMarker, LineBuffer } from './line-buffer.js';

async function collect(iterator: AsyncIterable<string>): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of iterator) lines.push(line);
  return lines;
}

describe('LineBuffer', () => {
  it('should keep at most maxLines lines, oldest evicted first', () => {
    const buffer = new LineBuffer({ maxLines: 3, maxBytes: 1024 });
    for (const line of ['1', '2', '3', '4', '5']) buffer.push(line);
    expect(buffer.tail()).toEqual(['3', '4', '5']);
    expect(buffer.tail(2)).toEqual(['4', '5']);
    expect(buffer.tail(0)).toEqual([]);
    expect(buffer.stats()).toMatchObject({ lines: 3, bytes: 3, totalLines: 5, evictedLines: 2 });
  });

  it('should keep at most maxBytes bytes of text, counted in UTF-8', () => {
    const buffer = new LineBuffer({ maxLines: 100, maxBytes: 10 });
    buffer.push('éé'); // 4 bytes
    buffer.push('abcd');
    buffer.push('xyz');
    expect(buffer.tail()).toEqual(['abcd', 'xyz']);
    expect(buffer.stats().bytes).toBe(7);
  });

  it('should keep nothing with maxLines 0 and still count what went through', () => {
    const buffer = new LineBuffer({ maxLines: 0, maxBytes: 0 });
    buffer.push('a');
    expect(buffer.tail()).toEqual([]);
    expect(buffer.stats()).toMatchObject({ lines: 0, bytes: 0, totalLines: 1 });
  });

  it('should give a follower only live lines, then end with the stream', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    buffer.push('old');
    const followed = collect(buffer.follow());
    buffer.push('new 1');
    buffer.push('new 2');
    buffer.end();
    expect(await followed).toEqual(['new 1', 'new 2']);
    expect(buffer.stats().followers).toBe(0);
  });

  it('should start a follower from the tail when asked', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    for (const line of ['a', 'b', 'c']) buffer.push(line);
    const followed = collect(buffer.follow({ fromTail: 2 }));
    buffer.push('d');
    buffer.end();
    expect(await followed).toEqual(['b', 'c', 'd']);
  });

  it('should end a follower created after the end at once', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    buffer.push('a');
    buffer.end();
    expect(await collect(buffer.follow({ fromTail: 5 }))).toEqual(['a']);
  });

  it('should reject a waiting follower with the reason when its signal aborts', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    const controller = new AbortController();
    const iterator = buffer.follow({ signal: controller.signal });
    buffer.push('one');
    expect(await iterator.next()).toEqual({ value: 'one', done: false });
    const waiting = iterator.next();
    const reason = new Error('enough');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(buffer.stats().followers).toBe(0);
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
  });

  it('should reject the next call when the signal aborts while the consumer is busy, not end quietly', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    const controller = new AbortController();
    const iterator = buffer.follow({ signal: controller.signal });
    buffer.push('one');
    expect(await iterator.next()).toEqual({ value: 'one', done: false });
    // No next() pending: the loop body is still working when the abort comes.
    const reason = new Error('stop now');
    controller.abort(reason);
    await expect(iterator.next()).rejects.toBe(reason);
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
  });

  it('should reject at once when the signal was already aborted', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    const reason = new Error('already');
    const iterator = buffer.follow({ signal: AbortSignal.abort(reason) });
    await expect(iterator.next()).rejects.toBe(reason);
  });

  it('should forget a follower that breaks out of its loop', async () => {
    const buffer = new LineBuffer({ maxLines: 10, maxBytes: 1024 });
    const followed = (async () => {
      for await (const line of buffer.follow()) if (line === 'stop') return line;
      return undefined;
    })();
    buffer.push('go');
    buffer.push('stop');
    expect(await followed).toBe('stop');
    expect(buffer.stats().followers).toBe(0);
  });

  it('should drop the oldest lines of a slow follower and say how many', async () => {
    const buffer = new LineBuffer({ maxLines: 1000, maxBytes: 1 << 20 });
    const iterator = buffer.follow({ maxPendingLines: 5 });
    for (let index = 0; index < 100; index += 1) buffer.push(`line ${index}`);
    buffer.end();
    const lines = await collect(iterator);
    expect(lines).toEqual([droppedLinesMarker(95), 'line 95', 'line 96', 'line 97', 'line 98', 'line 99']);
    expect(buffer.stats().droppedFollowerLines).toBe(95);
  });

  it('should bound a slow follower by bytes as well', async () => {
    const buffer = new LineBuffer({ maxLines: 1000, maxBytes: 1 << 20 });
    const iterator = buffer.follow({ maxPendingBytes: 20 });
    for (let index = 0; index < 10; index += 1) buffer.push('0123456789');
    buffer.end();
    expect(await collect(iterator)).toEqual([droppedLinesMarker(8), '0123456789', '0123456789']);
  });
});
