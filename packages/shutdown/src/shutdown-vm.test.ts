import { MicrovmError, TimeoutError } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { fakeClient, fakeProcess } from './__fixtures__/fakes.js';
import { type ShutdownVmOptions, shutdownVm } from './shutdown-vm.js';

// Grace periods long enough that a test finishing early proves the ladder did not wait them out.
const long = 60_000;
// Grace periods for steps that must expire: short, so the tests stay fast.
const short = 20;

describe('shutdownVm', () => {
  it('should report a process that already exited, and neither signal it nor call the API', async () => {
    const vmm = fakeProcess({ exited: { exitCode: 1, signal: null } });
    const client = fakeClient(vmm);
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true });
    expect(outcome).toMatchObject({
      how: 'already-exited',
      exitCode: 1,
      signal: null,
      aborted: false,
      steps: [],
    });
    expect(vmm.signals).toEqual([]);
    expect(client.calls).toEqual([]);
  });

  it('should stop gracefully when the guest honours Ctrl-Alt-Del, without sending a signal', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: true });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome).toMatchObject({ how: 'graceful', exitCode: 0, signal: null, aborted: false });
    expect(outcome.steps).toEqual([expect.objectContaining({ action: 'ctrl-alt-del', result: 'exited' })]);
    expect(client.calls).toEqual(['describeInstance', 'sendCtrlAltDel']);
    expect(vmm.signals).toEqual([]);
  });

  it('should send SIGTERM once the grace period expires when the guest ignores Ctrl-Alt-Del', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: false });
    const outcome = await shutdownVm({
      process: vmm,
      client,
      ctrlAltDel: true,
      ctrlAltDelGraceMs: short,
      terminateGraceMs: long,
    });
    expect(outcome).toMatchObject({ how: 'terminated', exitCode: null, signal: 'SIGTERM' });
    expect(outcome.steps.map((step) => [step.action, step.result])).toEqual([
      ['ctrl-alt-del', 'grace-expired'],
      ['SIGTERM', 'exited'],
    ]);
    expect(vmm.signals).toEqual(['SIGTERM']);
  });

  it('should SIGKILL a process that ignores SIGTERM (PID 1 of a pid namespace) and wait until it is gone', async () => {
    const vmm = fakeProcess({ diesFrom: ['SIGKILL'] });
    const client = fakeClient(vmm, { honoursCtrlAltDel: false });
    const outcome = await shutdownVm({
      process: vmm,
      client,
      ctrlAltDel: true,
      ctrlAltDelGraceMs: short,
      terminateGraceMs: short,
    });
    expect(outcome).toMatchObject({ how: 'killed', signal: 'SIGKILL', aborted: false });
    expect(outcome.steps.map((step) => [step.action, step.result])).toEqual([
      ['ctrl-alt-del', 'grace-expired'],
      ['SIGTERM', 'grace-expired'],
      ['SIGKILL', 'exited'],
    ]);
    expect(vmm.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(vmm.hasExited).toBe(true);
  });

  it('should go on with SIGTERM at once when the Ctrl-Alt-Del request fails, and report the fault', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { failing: ['sendCtrlAltDel'] });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome.how).toBe('terminated');
    expect(outcome.steps[0]).toMatchObject({
      action: 'ctrl-alt-del',
      result: 'failed',
      detail: 'sendCtrlAltDel refused',
    });
  });

  it('should go on with SIGTERM when the API does not answer GET /', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { failing: ['describeInstance'] });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome.how).toBe('terminated');
    expect(client.calls).toEqual(['describeInstance']);
    expect(outcome.steps[0]).toMatchObject({ action: 'ctrl-alt-del', result: 'failed' });
  });

  it('should skip Ctrl-Alt-Del for a VM that was never started', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { state: 'Not started', honoursCtrlAltDel: true });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome.how).toBe('terminated');
    expect(client.calls).toEqual(['describeInstance']);
    expect(outcome.steps[0]).toMatchObject({ action: 'ctrl-alt-del', result: 'skipped' });
    expect(outcome.steps[0]?.detail).toMatch(/never started/);
  });

  it('should resume a paused VM before Ctrl-Alt-Del, so the guest can see it', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { state: 'Paused', honoursCtrlAltDel: true });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome).toMatchObject({ how: 'graceful', exitCode: 0 });
    expect(client.calls).toEqual(['describeInstance', 'resumeVm', 'sendCtrlAltDel']);
  });

  it('should skip Ctrl-Alt-Del for a paused VM when resumePaused is false', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { state: 'Paused', honoursCtrlAltDel: true });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, resumePaused: false });
    expect(outcome.how).toBe('terminated');
    expect(client.calls).toEqual(['describeInstance']);
    expect(outcome.steps[0]?.detail).toMatch(/paused/);
  });

  it('should go on with SIGTERM when resuming the paused VM fails', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { state: 'Paused', failing: ['resumeVm'] });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome.how).toBe('terminated');
    expect(client.calls).toEqual(['describeInstance', 'resumeVm']);
  });

  it.each([
    { name: 'ctrlAltDel is false', ctrlAltDel: false, withClient: true, detail: /disabled/ },
    { name: 'there is no client', ctrlAltDel: true, withClient: false, detail: /no API client/ },
  ])('should skip Ctrl-Alt-Del when $name', async ({ ctrlAltDel, withClient, detail }) => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: true });
    const outcome = await shutdownVm({
      process: vmm,
      ...(withClient && { client }),
      ctrlAltDel,
      ctrlAltDelGraceMs: long,
    });
    expect(outcome.how).toBe('terminated');
    expect(client.calls).toEqual([]);
    expect(outcome.steps[0]?.detail).toMatch(detail);
  });

  it('should go straight to SIGKILL when terminate is false', async () => {
    const vmm = fakeProcess();
    const outcome = await shutdownVm({ process: vmm, ctrlAltDel: false, terminate: false });
    expect(outcome.how).toBe('killed');
    expect(vmm.signals).toEqual(['SIGKILL']);
  });

  it('should report already-exited when the process ends on its own before anything reached it', async () => {
    const vmm = fakeProcess();
    // The VMM crashes while we ask for its state: the API call fails, nothing was delivered.
    const client = fakeClient(vmm, {
      onCall: (name) => {
        if (name === 'describeInstance') vmm.end({ exitCode: 1, signal: null });
      },
    });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, ctrlAltDelGraceMs: long });
    expect(outcome).toMatchObject({ how: 'already-exited', exitCode: 1 });
    expect(vmm.signals).toEqual([]);
  });

  it('should SIGKILL at once when aborted during a grace period, and still wait until the process is gone', async () => {
    const vmm = fakeProcess({ diesFrom: ['SIGKILL'] });
    const controller = new AbortController();
    const client = fakeClient(vmm, {
      honoursCtrlAltDel: false,
      onCall: (name) => {
        if (name === 'sendCtrlAltDel') setTimeout(() => controller.abort(), 10);
      },
    });
    const outcome = await shutdownVm({
      process: vmm,
      client,
      ctrlAltDel: true,
      ctrlAltDelGraceMs: long,
      terminateGraceMs: long,
      signal: controller.signal,
    });
    expect(outcome).toMatchObject({ how: 'killed', aborted: true, signal: 'SIGKILL' });
    expect(outcome.steps.map((step) => [step.action, step.result])).toEqual([
      ['ctrl-alt-del', 'aborted'],
      ['SIGTERM', 'skipped'],
      ['SIGKILL', 'exited'],
    ]);
    expect(vmm.signals).toEqual(['SIGKILL']);
    expect(vmm.hasExited).toBe(true);
  });

  it('should SIGKILL without any gentle step when the signal is already aborted', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: true });
    const outcome = await shutdownVm({ process: vmm, client, ctrlAltDel: true, signal: AbortSignal.abort() });
    expect(outcome).toMatchObject({ how: 'killed', aborted: true });
    expect(client.calls).toEqual([]);
    expect(vmm.signals).toEqual(['SIGKILL']);
  });

  it('should throw a TimeoutError when the process outlives SIGKILL', async () => {
    const vmm = fakeProcess({ diesFrom: [] });
    const error = await shutdownVm({
      process: vmm,
      ctrlAltDel: false,
      terminateGraceMs: short,
      killTimeoutMs: short,
    }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).code).toBe('ERR_MICROVM_TIMEOUT');
    expect(vmm.signals).toEqual(['SIGTERM', 'SIGKILL']);
  });

  const badInputs: { name: string; options: (valid: ShutdownVmOptions) => unknown; field: string }[] = [
    {
      name: 'a negative grace period',
      options: (valid) => ({ ...valid, ctrlAltDelGraceMs: -1 }),
      field: 'ctrlAltDelGraceMs',
    },
    {
      name: 'a fractional grace period',
      options: (valid) => ({ ...valid, terminateGraceMs: 1.5 }),
      field: 'terminateGraceMs',
    },
    {
      name: 'a grace period past the timer limit',
      options: (valid) => ({ ...valid, terminateGraceMs: 2 ** 31 }),
      field: 'terminateGraceMs',
    },
    {
      name: 'a zero kill timeout',
      options: (valid) => ({ ...valid, killTimeoutMs: 0 }),
      field: 'killTimeoutMs',
    },
    {
      name: 'a string API timeout',
      options: (valid) => ({ ...valid, apiTimeoutMs: '100' }),
      field: 'apiTimeoutMs',
    },
    {
      name: 'NaN as a timeout',
      options: (valid) => ({ ...valid, killTimeoutMs: Number.NaN }),
      field: 'killTimeoutMs',
    },
    { name: 'a string flag', options: (valid) => ({ ...valid, ctrlAltDel: 'yes' }), field: 'ctrlAltDel' },
    { name: 'a numeric flag', options: (valid) => ({ ...valid, terminate: 0 }), field: 'terminate' },
    {
      name: 'a non-boolean resumePaused',
      options: (valid) => ({ ...valid, resumePaused: null }),
      field: 'resumePaused',
    },
    { name: 'no process', options: (valid) => ({ ...valid, process: undefined }), field: 'process' },
    {
      name: 'a bare pid as the process',
      options: (valid) => ({ ...valid, process: 4242 }),
      field: 'process',
    },
    {
      name: 'a client without sendCtrlAltDel',
      options: (valid) => ({ ...valid, client: {} }),
      field: 'client',
    },
    {
      name: 'a signal that is not an AbortSignal',
      options: (valid) => ({ ...valid, signal: {} }),
      field: 'signal',
    },
    { name: 'options that are not an object', options: () => null, field: 'options' },
  ];

  it.each(badInputs)(
    'should reject $name before signalling or calling anything',
    async ({ options, field }) => {
      const vmm = fakeProcess();
      const client = fakeClient(vmm, { honoursCtrlAltDel: true });
      const error = await shutdownVm(options({ process: vmm, client }) as ShutdownVmOptions).catch(
        (reason: unknown) => reason,
      );
      expect(MicrovmError.isInstance(error)).toBe(true);
      expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field });
      expect(vmm.signals).toEqual([]);
      expect(client.calls).toEqual([]);
      expect(vmm.hasExited).toBe(false);
    },
  );
});
