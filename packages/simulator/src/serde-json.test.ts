import { describe, expect, it } from 'vitest';
import {
  deserializeStruct,
  deserializeValue,
  expectedList,
  parseJsonDocument,
  positionOf,
  SerdeJsonError,
  type StructSchema,
} from './serde-json.js';

const schema: StructSchema = {
  name: 'Example',
  denyUnknownFields: true,
  fields: [
    { name: 'count', type: { kind: 'unsigned', name: 'u8' } },
    { name: 'name', type: { kind: 'string' }, optional: true },
    { name: 'flag', type: { kind: 'boolean' }, hasDefault: true },
    { name: 'mode', type: { kind: 'enum', name: 'Mode', variants: ['Fast', 'Slow'] }, optional: true },
    {
      name: 'bucket',
      type: {
        kind: 'struct',
        schema: {
          name: 'Bucket',
          denyUnknownFields: false,
          fields: [{ name: 'size', type: { kind: 'unsigned', name: 'u64' } }],
        },
      },
      optional: true,
    },
  ],
};

function errorOf(text: string): string {
  try {
    deserializeStruct(text, schema);
  } catch (error) {
    if (error instanceof SerdeJsonError) return error.message;
    throw error;
  }
  return 'no error';
}

describe('deserializeStruct', () => {
  it('should return the typed fields and ignore unknown fields of lenient nested structs', () => {
    expect(
      deserializeStruct('{"count": 3, "name": null, "bucket": {"size": 1, "extra": true}}', schema),
    ).toEqual({
      count: 3,
      name: undefined,
      bucket: { size: 1 },
    });
  });

  it.each([
    [
      '{"count":1,"colour":2}',
      'unknown field `colour`, expected one of `count`, `name`, `flag`, `mode`, `bucket` at line 1 column 19',
    ],
    ['{}', 'missing field `count` at line 1 column 2'],
    ['{"count":"2"}', 'invalid type: string "2", expected u8 at line 1 column 12'],
    ['{"count":256}', 'invalid value: integer `256`, expected u8 at line 1 column 12'],
    ['{"count":-1}', 'invalid value: integer `-1`, expected u8 at line 1 column 11'],
    ['{"count":1.5}', 'invalid type: floating point `1.5`, expected u8 at line 1 column 12'],
    ['{"count":2.0}', 'invalid type: floating point `2.0`, expected u8 at line 1 column 12'],
    ['{"count":1,"flag":null}', 'invalid type: null, expected a boolean at line 1 column 22'],
    [
      '{"count":1,"mode":"Medium"}',
      'unknown variant `Medium`, expected `Fast` or `Slow` at line 1 column 26',
    ],
    ['{"count":1,"mode":1}', 'expected value at line 1 column 19'],
    ['{"count":1,"count":2}', 'duplicate field `count` at line 1 column 18'],
    ['{"count":1,"name":{}}', 'invalid type: map, expected a string at line 1 column 18'],
    ['[1]', 'invalid type: sequence, expected struct Example at line 1 column 0'],
    ['"text"', 'invalid type: string "text", expected struct Example at line 1 column 6'],
    ['{"count":1', 'EOF while parsing an object at line 1 column 10'],
    ['{"count":1} x', 'trailing characters at line 1 column 13'],
    ['{"count":1,}', 'trailing comma at line 1 column 12'],
    ['{count:1}', 'key must be a string at line 1 column 2'],
    ['', 'EOF while parsing a value at line 1 column 0'],
    [
      '{\n  "count": 1,\n  "bad": 2\n}',
      'unknown field `bad`, expected one of `count`, `name`, `flag`, `mode`, `bucket` at line 3 column 7',
    ],
  ])('should reject %j like serde_json', (text, message) => {
    expect(errorOf(text)).toBe(message);
  });
});

describe('helpers', () => {
  it('should list expected names like serde', () => {
    expect(expectedList([], 'there are no fields')).toBe('there are no fields');
    expect(expectedList(['a'], '')).toBe('expected `a`');
    expect(expectedList(['a', 'b'], '')).toBe('expected `a` or `b`');
    expect(expectedList(['a', 'b', 'c'], '')).toBe('expected one of `a`, `b`, `c`');
  });

  it('should count columns in bytes', () => {
    expect(positionOf('{"é":1}', 5)).toEqual({ line: 1, column: 7 });
  });

  it('should keep the last of duplicate keys in free-form values, like serde_json::Value', () => {
    expect(deserializeValue('{"a":1,"a":2,"b":[true,null,"x"]}', { kind: 'any' })).toEqual({
      a: 2,
      b: [true, null, 'x'],
    });
  });

  it('should parse escapes', () => {
    const node = parseJsonDocument('"a\\n\\u00e9\\"b"');
    expect(node.kind === 'string' && node.value).toBe('a\né"b');
  });
});
