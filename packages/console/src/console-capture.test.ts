import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { MicrovmError } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { ConsoleCapture, type ConsoleEvents } from './console-capture.js';

async function expectCode(promise: Promise<unknown>, code: string): Promise<MicrovmError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(MicrovmError.isInstance(error), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as MicrovmError).code).toBe(code);
  return error as MicrovmError;
}

describe('ConsoleCapture', () => {
  it('should drain an attached stream into the buffer and end with it', async () => {
    const capture = new ConsoleCapture();
    const stream = new PassThrough();
    capture.attach(stream);
    const followed = (async () => {
      const lines: string[] = [];
      for await (const line of capture.follow()) lines.push(line);
      return lines;
    })();
    stream.write('boot\r\nready');
    stream.end('\r\n');
    expect(await followed).toEqual(['boot', 'ready']);
    expect(capture.ended).toBe(true);
    expect(capture.tail()).toEqual(['boot', 'ready']);
    expect(capture.stats()).toMatchObject({ lines: 2, bytesRead: 13 });
  });

  it('should keep the partial lines of two sources apart and end after both', () => {
    const capture = new ConsoleCapture();
    const first = capture.source();
    const second = capture.source();
    first.write('from first ');
    second.write('from second\n');
    first.write('stream\n');
    first.end();
    expect(capture.ended).toBe(false);
    second.end();
    expect(capture.ended).toBe(true);
    expect(capture.tail()).toEqual(['from second', 'from first stream']);
  });

  it('should report the first line, kernel panics and guest reboots', () => {
    const capture = new ConsoleCapture({ startTimeMs: performance.now() - 1000 });
    const events: { name: keyof ConsoleEvents; event: unknown }[] = [];
    for (const name of ['first-line', 'kernel-panic', 'guest-reboot', 'end'] as const) {
      capture.on(name, (event) => events.push({ name, event }));
    }
    capture.write('[    0.000000] Linux version 6.1\n');
    capture.write('[    0.5] Kernel panic - not syncing: VFS: Unable to mount root fs\n');
    capture.write('[    1.0] reboot: Restarting system\n');
    capture.write('[    1.1] reboot: Power down\n');
    capture.end();
    expect(events.map(({ name }) => name)).toEqual([
      'first-line',
      'kernel-panic',
      'guest-reboot',
      'guest-reboot',
      'end',
    ]);
    const first = events[0]!.event as ConsoleEvents['first-line'];
    expect(first.line).toBe('[    0.000000] Linux version 6.1');
    expect(first.elapsedMs).toBeGreaterThanOrEqual(1000);
    expect((events[2]!.event as ConsoleEvents['guest-reboot']).kind).toBe('restart');
    expect((events[3]!.event as ConsoleEvents['guest-reboot']).kind).toBe('power-off');
  });

  it('should not detect guest events when told not to', () => {
    const capture = new ConsoleCapture({ detectGuestEvents: false });
    let panics = 0;
    capture.on('kernel-panic', () => {
      panics += 1;
    });
    capture.write('Kernel panic - not syncing: x\n');
    expect(panics).toBe(0);
  });

  it('should keep draining when a listener throws, and stop calling one that unsubscribed', () => {
    const capture = new ConsoleCapture();
    const seen: string[] = [];
    capture.on('line', () => {
      throw new Error('listener bug');
    });
    const off = capture.on('line', ({ line }) => seen.push(line));
    capture.write('a\nb\n');
    off();
    capture.write('c\n');
    expect(seen).toEqual(['a', 'b']);
    expect(capture.tail()).toEqual(['a', 'b', 'c']);
  });

  it('should resolve waitForLine with a kept or a live line', async () => {
    const capture = new ConsoleCapture();
    capture.write('kept: ready soon\n');
    expect(await capture.waitForLine('ready')).toBe('kept: ready soon');
    const live = capture.waitForLine(/guest ready$/, { fromTail: 0 });
    capture.write('noise\nmicrovm-simulator: guest ready\n');
    expect(await live).toBe('microvm-simulator: guest ready');
  });

  it('should reject waitForLine on timeout, on abort and when the stream ends', async () => {
    const capture = new ConsoleCapture();
    await expectCode(capture.waitForLine('never', { timeoutMs: 20 }), 'ERR_MICROVM_TIMEOUT');
    const reason = new Error('stop');
    await expect(capture.waitForLine('never', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    const ending = capture.waitForLine('never');
    capture.end();
    await expectCode(ending, 'ERR_MICROVM_PROCESS_EXITED');
  });

  it('should write every line to the log file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'console-capture-'));
    try {
      const path = join(dir, 'console.log');
      const capture = new ConsoleCapture({ logFile: { path, maxBytes: 4096, maxFiles: 2 } });
      capture.write('one\r\ntwo\n');
      await capture.close();
      expect(capture.logFilePath).toBe(path);
      expect(await readFile(path, 'utf8')).toBe('one\ntwo\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [{ maxLines: -1 }, 'maxLines'],
    [{ maxLines: 1.5 }, 'maxLines'],
    [{ maxBytes: 'big' }, 'maxBytes'],
    [{ maxLineBytes: 0 }, 'maxLineBytes'],
    [{ maxBytes: 100, maxLineBytes: 4096 }, 'maxBytes'],
    [{ logFile: 'x.log' }, 'logFile'],
    [{ logFile: { path: 'relative.log' } }, 'logFile.path'],
    [{ logFile: { path: '/tmp/x.log', maxBytes: 10 } }, 'logFile.maxBytes'],
    [{ logFile: { path: '/tmp/x.log', maxFiles: 0 } }, 'logFile.maxFiles'],
    [{ logFile: { path: '/tmp/x.log', maxFiles: 101 } }, 'logFile.maxFiles'],
  ])('should reject %j naming %s', (options, field) => {
    let error: unknown;
    try {
      new ConsoleCapture(options as never);
    } catch (caught) {
      error = caught;
    }
    expect(MicrovmError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field });
  });
});
