import { describe, expect, it } from 'vitest';
import {
  FirecrackerApiError,
  isSystemError,
  isUserError,
  MicrovmError,
  ProcessExitError,
  TimeoutError,
  ValidationError,
} from './index.js';

describe('MicrovmError', () => {
  it('should keep code, message and cause', () => {
    const cause = new Error('root');
    const error = new MicrovmError({ code: 'ERR_MICROVM_STATE_STORE', message: 'disk full', cause });
    expect(error.code).toBe('ERR_MICROVM_STATE_STORE');
    expect(error.message).toBe('disk full');
    expect(error.cause).toBe(cause);
    expect(error.isUserError).toBe(false);
  });

  it('should be recognised through the global brand, also from another copy', () => {
    const foreign = Object.assign(new Error('x'), { [Symbol.for('microvm.error')]: true });
    expect(MicrovmError.isInstance(foreign)).toBe(true);
    expect(MicrovmError.isInstance(new Error('x'))).toBe(false);
    expect(MicrovmError.isInstance(null)).toBe(false);
    expect(MicrovmError.isInstance('ERR_MICROVM_API')).toBe(false);
  });

  it('should split user and system errors by code', () => {
    const user = new ValidationError({ field: 'vmId', rule: 'must match [A-Za-z0-9-]{1,64}', value: 'a_b' });
    const system = new TimeoutError({ operation: 'GET /', timeoutMs: 5 });
    expect(isUserError(user)).toBe(true);
    expect(isSystemError(user)).toBe(false);
    expect(isSystemError(system)).toBe(true);
    expect(isUserError(new Error('plain'))).toBe(false);
  });
});

describe('subclasses', () => {
  it('should name the field, the rule and the value in a ValidationError', () => {
    const error = new ValidationError({
      field: 'drives[0].driveId',
      rule: 'must match [A-Za-z0-9_]+',
      value: 'a-b',
    });
    expect(error).toBeInstanceOf(MicrovmError);
    expect(error.name).toBe('ValidationError');
    expect(error.message).toBe('Invalid drives[0].driveId: must match [A-Za-z0-9_]+ (got "a-b")');
    expect({ field: error.field, rule: error.rule, value: error.value }).toEqual({
      field: 'drives[0].driveId',
      rule: 'must match [A-Za-z0-9_]+',
      value: 'a-b',
    });
  });

  it('should carry the request and the fault in a FirecrackerApiError', () => {
    const error = new FirecrackerApiError({
      method: 'PUT',
      path: '/boot-source',
      statusCode: 400,
      faultMessage: 'The requested operation is not supported after starting the microVM.',
    });
    expect(error.code).toBe('ERR_MICROVM_API');
    expect(error.message).toContain('PUT /boot-source (400)');
    expect(error.isRetryable).toBe(false);
    expect(
      new FirecrackerApiError({ method: 'GET', path: '/', statusCode: 503, faultMessage: 'x' }).isRetryable,
    ).toBe(true);
  });

  it('should describe how a process ended', () => {
    const error = new ProcessExitError({ pid: 7, exitCode: 153, signal: null, stderrTail: 'bad argument\n' });
    expect(error.message).toBe('The VMM process ended with exit code 153: bad argument');
    const killed = new ProcessExitError({ exitCode: null, signal: 'SIGKILL', stderrTail: '' });
    expect(killed.message).toBe('The VMM process ended with signal SIGKILL');
  });
});
