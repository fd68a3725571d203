import { describe, expect, it } from 'vitest';
import { InvalidStateError } from '../errors/index.js';
import {
  allowedStatesByOperation,
  assertOperationAllowed,
  type VmOperation,
  type VmState,
} from './lifecycle.js';

const states: VmState[] = ['creating', 'created', 'running', 'paused', 'stopped', 'failed', 'destroyed'];
const operations = Object.keys(allowedStatesByOperation) as VmOperation[];

describe('assertOperationAllowed', () => {
  const table = operations.flatMap((operation) =>
    states.map((state) => ({
      operation,
      state,
      allowed: allowedStatesByOperation[operation].includes(state),
    })),
  );

  it.each(table)('should $operation from $state: allowed=$allowed', ({ operation, state, allowed }) => {
    if (allowed) {
      expect(() => assertOperationAllowed('vm', state, operation)).not.toThrow();
      return;
    }
    const error = (() => {
      try {
        assertOperationAllowed('vm', state, operation);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidStateError);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_STATE', vmId: 'vm', state, operation });
  });

  it('should never allow anything on a destroyed VM', () => {
    for (const operation of operations)
      expect(allowedStatesByOperation[operation]).not.toContain('destroyed');
  });
});
