import { isAbsolute } from 'node:path';
import { ValidationError } from '@microvm/core';
import { cutLineMarkerMaxBytes } from './line-splitter.js';

export interface LogFileOptions {
  /** Absolute path of the current file; rotated files get `.1`, `.2`, … */
  path: string;
  /** Bytes per file before rotation. Default 10 MiB; at least 1024. */
  maxBytes?: number;
  /** Files kept, the current one included. Default 3; 1 to 100. */
  maxFiles?: number;
}

export interface BufferOptions {
  /** Lines kept in memory. Default 1000; 0 keeps none (the stream is still drained and followable). */
  maxLines?: number;
  /** UTF-8 bytes of line text kept in memory. Default 1 MiB. */
  maxBytes?: number;
  /** Bytes kept of one line; the rest is cut and replaced by `… [cut N bytes]`. Default 4096. */
  maxLineBytes?: number;
}

export interface ResolvedBufferOptions {
  maxLines: number;
  maxBytes: number;
  maxLineBytes: number;
}

export const defaultMaxLines = 1000;
export const defaultMaxBytes = 1024 * 1024;
export const defaultMaxLineBytes = 4096;
export const defaultLogFileMaxBytes = 10 * 1024 * 1024;
export const defaultLogFileMaxFiles = 3;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function integerOption(
  value: unknown,
  field: string,
  fallback: number,
  minimum: number,
  maximum: number = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < minimum || value > maximum) {
    const range = maximum === Number.MAX_SAFE_INTEGER ? `≥ ${minimum}` : `from ${minimum} to ${maximum}`;
    throw new ValidationError({ field, rule: `must be an integer ${range}`, value });
  }
  return value;
}

/** Checks the buffer bounds: every line that may be kept must fit in `maxBytes`. */
export function resolveBufferOptions(options: unknown, prefix = ''): ResolvedBufferOptions {
  const source = isObject(options) ? options : {};
  const maxLines = integerOption(source.maxLines, `${prefix}maxLines`, defaultMaxLines, 0);
  const maxLineBytes = integerOption(source.maxLineBytes, `${prefix}maxLineBytes`, defaultMaxLineBytes, 1);
  const maxBytes = integerOption(source.maxBytes, `${prefix}maxBytes`, defaultMaxBytes, 0);
  if (maxLines > 0 && maxBytes < maxLineBytes + cutLineMarkerMaxBytes) {
    throw new ValidationError({
      field: `${prefix}maxBytes`,
      rule: `must hold one full line: at least maxLineBytes + ${cutLineMarkerMaxBytes} (${maxLineBytes + cutLineMarkerMaxBytes})`,
      value: maxBytes,
    });
  }
  return { maxLines, maxBytes, maxLineBytes };
}

export function resolveLogFileOptions(value: unknown, field: string): Required<LogFileOptions> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) {
    throw new ValidationError({ field, rule: 'must be an object { path, maxBytes?, maxFiles? }', value });
  }
  if (typeof value.path !== 'string' || !isAbsolute(value.path) || value.path.includes('\0')) {
    throw new ValidationError({
      field: `${field}.path`,
      rule: 'must be an absolute path',
      value: value.path,
    });
  }
  return {
    path: value.path,
    maxBytes: integerOption(value.maxBytes, `${field}.maxBytes`, defaultLogFileMaxBytes, 1024),
    maxFiles: integerOption(value.maxFiles, `${field}.maxFiles`, defaultLogFileMaxFiles, 1, 100),
  };
}

export function optionsObject(value: unknown, field: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isObject(value)) throw new ValidationError({ field, rule: 'must be an object', value });
  return value;
}
