import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { droppedWritesMarker, RotatingLogFile } from './rotating-log-file.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'console-log-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('RotatingLogFile', () => {
  it('should rotate at maxBytes and keep at most maxFiles files, newest lines last', async () => {
    const path = join(dir, 'console.log');
    const file = new RotatingLogFile({ path, maxBytes: 1024, maxFiles: 3 });
    const lines = Array.from({ length: 500 }, (_, index) => `line ${String(index).padStart(4, '0')}`);
    for (const line of lines) file.append(line);
    await file.close();

    expect((await readdir(dir)).sort()).toEqual(['console.log', 'console.log.1', 'console.log.2']);
    for (const name of await readdir(dir))
      expect((await stat(join(dir, name))).size).toBeLessThanOrEqual(1024);
    const kept = [
      await readFile(`${path}.2`, 'utf8'),
      await readFile(`${path}.1`, 'utf8'),
      await readFile(path, 'utf8'),
    ]
      .join('')
      .split('\n')
      .filter(Boolean);
    // Whole lines only, in order, ending with the last one written.
    expect(kept).toEqual(lines.slice(lines.length - kept.length));
  });

  it('should start over in one file with maxFiles 1', async () => {
    const path = join(dir, 'one.log');
    const file = new RotatingLogFile({ path, maxBytes: 1024, maxFiles: 1 });
    for (let index = 0; index < 300; index += 1) file.append(`entry ${index}`);
    await file.close();
    expect(await readdir(dir)).toEqual(['one.log']);
    const text = await readFile(path, 'utf8');
    expect(text.endsWith('entry 299\n')).toBe(true);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
  });

  it('should drop lines past maxPendingBytes and write a marker instead of growing', async () => {
    const path = join(dir, 'slow.log');
    const file = new RotatingLogFile({ path, maxBytes: 1 << 20, maxFiles: 1, maxPendingBytes: 100 });
    // All appended in one turn of the event loop: the disk cannot take any of them before the cap.
    for (let index = 0; index < 50; index += 1) file.append(`line ${String(index).padStart(3, '0')}`);
    await file.close();
    const text = await readFile(path, 'utf8');
    const written = text.split('\n').filter((line) => line.startsWith('line '));
    // 9 bytes a line: 11 fit in 100 bytes, the other 39 are dropped and counted.
    expect(written).toEqual(
      Array.from({ length: 11 }, (_, index) => `line ${String(index).padStart(3, '0')}`),
    );
    expect(text.endsWith(`${droppedWritesMarker(39)}\n`)).toBe(true);
  });

  it('should report a write failure once and stop writing', async () => {
    const errors: Error[] = [];
    const file = new RotatingLogFile({
      path: join(dir, 'missing-folder', 'x.log'),
      maxBytes: 4096,
      maxFiles: 2,
      onError: (error) => errors.push(error),
    });
    file.append('a');
    file.append('b');
    await file.close();
    expect(errors).toHaveLength(1);
    expect(file.error).toBe(errors[0]);
  });
});
