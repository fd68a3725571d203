import { describe, expect, it } from 'vitest';
import { cutLineMarker, LineSplitter, utf8Prefix } from './line-splitter.js';

function split(chunks: (string | Buffer)[], maxLineBytes = 4096): { lines: string[]; cuts: number[] } {
  const lines: string[] = [];
  const cuts: number[] = [];
  const splitter = new LineSplitter({
    maxLineBytes,
    onLine: (line, cutBytes) => {
      lines.push(line);
      cuts.push(cutBytes);
    },
  });
  for (const chunk of chunks) splitter.write(chunk);
  splitter.end();
  return { lines, cuts };
}

/** Every byte of `text` as its own chunk: the worst case for multi-byte characters and CRLF. */
function bytewise(text: string): Buffer[] {
  return [...Buffer.from(text, 'utf8')].map((byte) => Buffer.of(byte));
}

describe('LineSplitter', () => {
  it('should reassemble UTF-8 characters split across chunks', () => {
    const text = 'héllo wörld 🚀 日本語\nzweite Zeile ✓\n';
    expect(split(bytewise(text)).lines).toEqual(['héllo wörld 🚀 日本語', 'zweite Zeile ✓']);
  });

  it.each([
    ['LF', 'a\nb\n', ['a', 'b']],
    ['CRLF', 'a\r\nb\r\n', ['a', 'b']],
    ['lone CR', 'a\rb\r', ['a', 'b']],
    ['mixed', 'a\r\nb\rc\nd', ['a', 'b', 'c', 'd']],
    ['empty lines kept', '\n\r\n\n', ['', '', '']],
    ['CR CR LF', 'a\r\r\n', ['a', '']],
    ['no terminator at the end', 'tail without newline', ['tail without newline']],
  ])('should split %s', (_name, text, expected) => {
    expect(split([text]).lines).toEqual(expected);
    expect(split(bytewise(text)).lines).toEqual(expected);
  });

  it('should not make an empty line of a CRLF split between two chunks', () => {
    expect(split(['first\r', '\nsecond\r', '\n']).lines).toEqual(['first', 'second']);
  });

  it('should cut an overlong line with a marker counting the cut bytes', () => {
    const { lines, cuts } = split(['x'.repeat(100), 'y'.repeat(50), '\nshort\n'], 64);
    expect(lines).toEqual([`${'x'.repeat(64)}${cutLineMarker(86)}`, 'short']);
    expect(cuts).toEqual([86, 0]);
  });

  it('should cut on a character boundary, never inside a multi-byte character', () => {
    // '€' is 3 bytes: 10 of them are 30 bytes; 16 bytes hold 5 whole ones.
    const { lines } = split([`${'€'.repeat(10)}\n`], 16);
    expect(lines[0]).toBe(`${'€'.repeat(5)}${cutLineMarker(15)}`);
    expect(lines[0]).not.toContain('\uFFFD');
  });

  it('should cut a line that only grows too long over many chunks', () => {
    const chunks = Array.from({ length: 100 }, () => 'abcdefghij');
    const { lines } = split([...chunks, '\n'], 25);
    expect(lines).toEqual([`abcdefghijabcdefghijabcde${cutLineMarker(975)}`]);
  });

  it('should flush a partial multi-byte character at the end as a replacement', () => {
    const euro = Buffer.from('€');
    expect(split([Buffer.concat([Buffer.from('ok '), euro.subarray(0, 2)])]).lines).toEqual(['ok \uFFFD']);
  });
});

describe('utf8Prefix', () => {
  it.each([
    ['ascii', 'abcdef', 3, 'abc'],
    ['fits', 'abc', 10, 'abc'],
    ['2-byte boundary', 'ééé', 5, 'éé'],
    ['4-byte emoji', '🚀🚀', 7, '🚀'],
    ['nothing fits', '🚀', 3, ''],
  ])('should take the %s prefix', (_name, text, maxBytes, expected) => {
    expect(utf8Prefix(text, maxBytes)).toBe(expected);
  });
});
