/**
 * A JSON reader and typed deserializer that fails the way serde_json + `#[derive(Deserialize)]` fail, so the
 * simulator's 400s carry the same texts (`unknown field`, `missing field`, `invalid type`, positions) as
 * Firecracker's. Positions are serde_json's: the line and the byte column of the last character read.
 */

export type JsonNode =
  | { kind: 'null'; start: number; end: number }
  | { kind: 'boolean'; value: boolean; start: number; end: number }
  | { kind: 'number'; raw: string; value: number; isInteger: boolean; start: number; end: number }
  | { kind: 'string'; value: string; start: number; end: number }
  | { kind: 'array'; items: JsonNode[]; start: number; end: number }
  | { kind: 'object'; entries: JsonObjectEntry[]; start: number; end: number };

export interface JsonObjectEntry {
  key: string;
  /** Index of the key's closing quote. */
  keyEnd: number;
  value: JsonNode;
}

/** A serde_json error: the message already ends with ` at line L column C`. */
export class SerdeJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SerdeJsonError';
  }
}

/** The line and byte column of the character at `index` (serde_json counts bytes, 1-based). */
export function positionOf(text: string, index: number): { line: number; column: number } {
  const clamped = Math.max(-1, Math.min(index, text.length - 1));
  let line = 1;
  let lineStart = 0;
  for (let cursor = 0; cursor <= clamped; cursor += 1) {
    if (text.charCodeAt(cursor) === 0x0a) {
      line += 1;
      lineStart = cursor + 1;
    }
  }
  if (clamped >= 0 && text.charCodeAt(clamped) === 0x0a) return { line, column: 0 };
  const column = Buffer.byteLength(text.slice(lineStart, clamped + 1), 'utf8');
  return { line, column };
}

function errorAt(text: string, index: number, message: string): SerdeJsonError {
  const { line, column } = positionOf(text, index);
  return new SerdeJsonError(`${message} at line ${line} column ${column}`);
}

class JsonReader {
  index = 0;
  constructor(readonly text: string) {}

  fail(message: string, index = this.index): never {
    throw errorAt(this.text, index, message);
  }

  skipWhitespace(): void {
    while (this.index < this.text.length) {
      const code = this.text.charCodeAt(this.index);
      if (code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d) this.index += 1;
      else break;
    }
  }

  /** Index of the last character consumed (what serde_json reports). */
  get last(): number {
    return this.index - 1;
  }

  readValue(eofMessage = 'EOF while parsing a value'): JsonNode {
    this.skipWhitespace();
    if (this.index >= this.text.length) this.fail(eofMessage, this.last);
    const character = this.text[this.index];
    switch (character) {
      case '{':
        return this.readObject();
      case '[':
        return this.readArray();
      case '"': {
        const start = this.index;
        return { kind: 'string', value: this.readString(), start, end: this.last };
      }
      case 't':
        return this.readLiteral('true', { kind: 'boolean', value: true, start: 0, end: 0 });
      case 'f':
        return this.readLiteral('false', { kind: 'boolean', value: false, start: 0, end: 0 });
      case 'n':
        return this.readLiteral('null', { kind: 'null', start: 0, end: 0 });
      default:
        if (character === '-' || (character !== undefined && character >= '0' && character <= '9')) {
          return this.readNumber();
        }
        return this.fail('expected value', this.index);
    }
  }

  readLiteral(word: string, node: JsonNode): JsonNode {
    const start = this.index;
    for (let offset = 0; offset < word.length; offset += 1) {
      if (this.index >= this.text.length) this.fail('EOF while parsing a value', this.last);
      if (this.text[this.index] !== word[offset]) this.fail('expected ident', this.index);
      this.index += 1;
    }
    return { ...node, start, end: this.last };
  }

  readNumber(): JsonNode {
    const start = this.index;
    if (this.text[this.index] === '-') this.index += 1;
    const digitsStart = this.index;
    while (this.index < this.text.length && /[0-9]/.test(this.text[this.index] ?? '')) this.index += 1;
    if (this.index === digitsStart) this.fail('invalid number', this.index);
    if (this.text[digitsStart] === '0' && this.index - digitsStart > 1)
      this.fail('invalid number', digitsStart + 1);
    let isInteger = true;
    if (this.text[this.index] === '.') {
      isInteger = false;
      this.index += 1;
      const fractionStart = this.index;
      while (this.index < this.text.length && /[0-9]/.test(this.text[this.index] ?? '')) this.index += 1;
      if (this.index === fractionStart) this.fail('invalid number', this.index);
    }
    if (this.text[this.index] === 'e' || this.text[this.index] === 'E') {
      isInteger = false;
      this.index += 1;
      if (this.text[this.index] === '+' || this.text[this.index] === '-') this.index += 1;
      const exponentStart = this.index;
      while (this.index < this.text.length && /[0-9]/.test(this.text[this.index] ?? '')) this.index += 1;
      if (this.index === exponentStart) this.fail('invalid number', this.index);
    }
    const raw = this.text.slice(start, this.index);
    return { kind: 'number', raw, value: Number(raw), isInteger, start, end: this.last };
  }

  readString(): string {
    // Opening quote.
    this.index += 1;
    let value = '';
    for (;;) {
      if (this.index >= this.text.length) this.fail('EOF while parsing a string', this.last);
      const character = this.text[this.index] as string;
      const code = character.charCodeAt(0);
      if (character === '"') {
        this.index += 1;
        return value;
      }
      if (code < 0x20)
        this.fail('control character (\\u0000-\\u001F) found while parsing a string', this.index);
      if (character !== '\\') {
        value += character;
        this.index += 1;
        continue;
      }
      this.index += 1;
      const escaped = this.text[this.index];
      const simple: Record<string, string> = {
        '"': '"',
        '\\': '\\',
        '/': '/',
        b: '\b',
        f: '\f',
        n: '\n',
        r: '\r',
        t: '\t',
      };
      if (escaped === undefined) this.fail('EOF while parsing a string', this.last);
      if (escaped in simple) {
        value += simple[escaped];
        this.index += 1;
        continue;
      }
      if (escaped !== 'u') this.fail('invalid escape', this.index);
      const hex = this.text.slice(this.index + 1, this.index + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid escape', this.index);
      value += String.fromCharCode(Number.parseInt(hex, 16));
      this.index += 5;
    }
  }

  readArray(): JsonNode {
    const start = this.index;
    this.index += 1;
    const items: JsonNode[] = [];
    this.skipWhitespace();
    if (this.text[this.index] === ']') {
      this.index += 1;
      return { kind: 'array', items, start, end: this.last };
    }
    for (;;) {
      items.push(this.readValue('EOF while parsing a list'));
      this.skipWhitespace();
      if (this.index >= this.text.length) this.fail('EOF while parsing a list', this.last);
      const character = this.text[this.index];
      this.index += 1;
      if (character === ']') return { kind: 'array', items, start, end: this.last };
      if (character !== ',') this.fail('expected `,` or `]`', this.last);
      this.skipWhitespace();
      if (this.text[this.index] === ']') this.fail('trailing comma', this.index);
    }
  }

  readObject(): JsonNode {
    const start = this.index;
    this.index += 1;
    const entries: JsonObjectEntry[] = [];
    this.skipWhitespace();
    if (this.text[this.index] === '}') {
      this.index += 1;
      return { kind: 'object', entries, start, end: this.last };
    }
    for (;;) {
      this.skipWhitespace();
      if (this.index >= this.text.length) this.fail('EOF while parsing an object', this.last);
      if (this.text[this.index] !== '"') this.fail('key must be a string', this.index);
      const key = this.readString();
      const keyEnd = this.last;
      this.skipWhitespace();
      if (this.index >= this.text.length) this.fail('EOF while parsing an object', this.last);
      if (this.text[this.index] !== ':') this.fail('expected `:`', this.index);
      this.index += 1;
      const value = this.readValue('EOF while parsing a value');
      entries.push({ key, keyEnd, value });
      this.skipWhitespace();
      if (this.index >= this.text.length) this.fail('EOF while parsing an object', this.last);
      const character = this.text[this.index];
      this.index += 1;
      if (character === '}') return { kind: 'object', entries, start, end: this.last };
      if (character !== ',') this.fail('expected `,` or `}`', this.last);
      this.skipWhitespace();
      if (this.text[this.index] === '}') this.fail('trailing comma', this.index);
    }
  }
}

/** Parses JSON text into position-annotated nodes, failing with serde_json's syntax messages. */
export function parseJsonDocument(text: string): JsonNode {
  const reader = new JsonReader(text);
  const node = reader.readValue();
  reader.skipWhitespace();
  if (reader.index < text.length) reader.fail('trailing characters', reader.index);
  return node;
}

/** Converts a node tree back to plain JSON values (for free-form data such as MMDS). */
export function nodeToValue(node: JsonNode): unknown {
  switch (node.kind) {
    case 'null':
      return null;
    case 'boolean':
    case 'string':
      return node.value;
    case 'number':
      return node.value;
    case 'array':
      return node.items.map(nodeToValue);
    case 'object': {
      // serde_json's `Value` keeps the last of duplicate keys.
      const result: Record<string, unknown> = {};
      for (const entry of node.entries) {
        Object.defineProperty(result, entry.key, {
          value: nodeToValue(entry.value),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return result;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Typed deserialization

export type UnsignedName = 'u8' | 'u16' | 'u32' | 'u64' | 'usize';

export type FieldType =
  | { kind: 'string' }
  | { kind: 'boolean' }
  | { kind: 'unsigned'; name: UnsignedName }
  | { kind: 'signed'; name: 'i32' | 'i64' }
  | { kind: 'enum'; name: string; variants: readonly string[] }
  | { kind: 'struct'; schema: StructSchema }
  | { kind: 'sequence'; item: FieldType }
  | { kind: 'any' }
  | {
      kind: 'custom';
      /** What the value is read as before the custom check. */
      base: FieldType;
      /** Returns the converted value, or an error text (serde's `D::Error::custom`). */
      convert: (value: unknown) => { value: unknown } | { error: string };
    };

export interface FieldSpec {
  name: string;
  type: FieldType;
  /** `Option<T>`: may be missing or `null`. */
  optional?: boolean;
  /** `#[serde(default)]`: may be missing, but `null` is a type error. */
  hasDefault?: boolean;
}

export interface StructSchema {
  /** The Rust type name, used in `expected struct X`. */
  name: string;
  fields: readonly FieldSpec[];
  denyUnknownFields: boolean;
}

const UNSIGNED_MAX: Record<UnsignedName, bigint> = {
  u8: 255n,
  u16: 65_535n,
  u32: 4_294_967_295n,
  u64: 18_446_744_073_709_551_615n,
  usize: 18_446_744_073_709_551_615n,
};

const SIGNED_RANGE: Record<'i32' | 'i64', [bigint, bigint]> = {
  i32: [-2_147_483_648n, 2_147_483_647n],
  i64: [-9_223_372_036_854_775_808n, 9_223_372_036_854_775_807n],
};

/** serde's `expected …` list: "`a`", "`a` or `b`", "one of `a`, `b`, `c`". */
export function expectedList(names: readonly string[], noneText: string): string {
  if (names.length === 0) return noneText;
  if (names.length === 1) return `expected \`${names[0]}\``;
  if (names.length === 2) return `expected \`${names[0]}\` or \`${names[1]}\``;
  return `expected one of ${names.map((name) => `\`${name}\``).join(', ')}`;
}

function floatDisplay(node: Extract<JsonNode, { kind: 'number' }>): string {
  const value = node.value;
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) {
    return `${BigInt(value).toString()}.0`;
  }
  return String(value);
}

/** serde's `Unexpected` display of a JSON value. */
function unexpected(node: JsonNode): string {
  switch (node.kind) {
    case 'null':
      return 'null';
    case 'boolean':
      return `boolean \`${node.value}\``;
    case 'string':
      return `string ${JSON.stringify(node.value)}`;
    case 'number':
      if (node.isInteger) return `integer \`${node.raw}\``;
      return `floating point \`${floatDisplay(node)}\``;
    case 'array':
      return 'sequence';
    case 'object':
      return 'map';
  }
}

function expecting(type: FieldType): string {
  switch (type.kind) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'unsigned':
    case 'signed':
      return type.name;
    case 'enum':
      return `enum ${type.name}`;
    case 'struct':
      return `struct ${type.schema.name}`;
    case 'sequence':
      return 'a sequence';
    case 'any':
      return 'any valid JSON value';
    case 'custom':
      return expecting(type.base);
  }
}

/** Where serde_json reports a type error for this node: containers are only peeked at. */
function errorIndexFor(node: JsonNode): number {
  if (node.kind === 'object' || node.kind === 'array') return node.start - 1;
  return node.end;
}

class Deserializer {
  constructor(readonly text: string) {}

  fail(index: number, message: string): never {
    throw errorAt(this.text, index, message);
  }

  invalidType(node: JsonNode, type: FieldType): never {
    return this.fail(errorIndexFor(node), `invalid type: ${unexpected(node)}, expected ${expecting(type)}`);
  }

  read(node: JsonNode, type: FieldType): unknown {
    switch (type.kind) {
      case 'any':
        return nodeToValue(node);
      case 'string':
        if (node.kind !== 'string') this.invalidType(node, type);
        return node.value;
      case 'boolean':
        if (node.kind !== 'boolean') this.invalidType(node, type);
        return node.value;
      case 'unsigned':
      case 'signed':
        return this.readInteger(node, type);
      case 'enum': {
        // serde_json reads enums from a string (unit variant) or a map; anything else is not a value for it.
        if (node.kind !== 'string') return this.fail(node.start, 'expected value');
        if (!type.variants.includes(node.value)) {
          this.fail(
            node.end,
            `unknown variant \`${node.value}\`, ${expectedList(type.variants, 'there are no variants')}`,
          );
        }
        return node.value;
      }
      case 'struct':
        return this.readStruct(node, type.schema);
      case 'sequence': {
        if (node.kind !== 'array') this.invalidType(node, type);
        return node.items.map((item) => this.read(item, type.item));
      }
      case 'custom': {
        const base = this.read(node, type.base);
        const converted = type.convert(base);
        if ('error' in converted) this.fail(node.end, converted.error);
        return converted.value;
      }
    }
  }

  readInteger(node: JsonNode, type: Extract<FieldType, { kind: 'unsigned' | 'signed' }>): number {
    if (node.kind !== 'number') this.invalidType(node, type);
    if (!node.isInteger) this.invalidType(node, type);
    const big = BigInt(node.raw);
    // serde_json parses integers that overflow u64/i64 as floats.
    if (big > UNSIGNED_MAX.u64 || big < SIGNED_RANGE.i64[0]) {
      this.fail(node.end, `invalid type: floating point \`${floatDisplay(node)}\`, expected ${type.name}`);
    }
    const [minimum, maximum] =
      type.kind === 'unsigned' ? [0n, UNSIGNED_MAX[type.name]] : SIGNED_RANGE[type.name];
    if (big < minimum || big > maximum) {
      this.fail(node.end, `invalid value: integer \`${node.raw}\`, expected ${type.name}`);
    }
    return Number(big);
  }

  readStruct(node: JsonNode, schema: StructSchema): Record<string, unknown> {
    if (node.kind !== 'object') {
      if (node.kind === 'array') {
        // serde derives also accept a sequence of fields; Firecracker bodies never use that form.
        this.fail(errorIndexFor(node), `invalid type: sequence, expected struct ${schema.name}`);
      }
      this.invalidType(node, { kind: 'struct', schema });
    }
    const result: Record<string, unknown> = {};
    const seen = new Set<string>();
    const fieldNames = schema.fields.map((field) => field.name);
    for (const entry of node.entries) {
      const field = schema.fields.find((candidate) => candidate.name === entry.key);
      if (field === undefined) {
        if (schema.denyUnknownFields) {
          this.fail(
            entry.keyEnd,
            `unknown field \`${entry.key}\`, ${expectedList(fieldNames, 'there are no fields')}`,
          );
        }
        continue;
      }
      if (seen.has(field.name)) this.fail(entry.keyEnd, `duplicate field \`${field.name}\``);
      seen.add(field.name);
      if (entry.value.kind === 'null' && field.optional) {
        result[field.name] = undefined;
        continue;
      }
      result[field.name] = this.read(entry.value, field.type);
    }
    for (const field of schema.fields) {
      if (!seen.has(field.name) && !field.optional && !field.hasDefault) {
        this.fail(node.end, `missing field \`${field.name}\``);
      }
    }
    return result;
  }
}

/** Deserializes `text` into `schema`, throwing a {@link SerdeJsonError} exactly where serde_json would. */
export function deserializeStruct<T>(text: string, schema: StructSchema): T {
  const node = parseJsonDocument(text);
  return new Deserializer(text).readStruct(node, schema) as T;
}

/** Deserializes one value of `type` (e.g. a free-form MMDS document). */
export function deserializeValue(text: string, type: FieldType): unknown {
  const node = parseJsonDocument(text);
  return new Deserializer(text).read(node, type);
}
