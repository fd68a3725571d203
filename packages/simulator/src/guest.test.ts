import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  commandLineValue,
  PausableScheduler,
  SerialConsole,
  SimulatedGuest,
  serialConsoleEnabled,
} from './guest.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('PausableScheduler', () => {
  it('should stop the clock while paused and keep the remaining time', () => {
    vi.useFakeTimers();
    const scheduler = new PausableScheduler();
    const ran: string[] = [];
    scheduler.schedule(100, () => ran.push('a'));
    vi.advanceTimersByTime(60);
    scheduler.pause();
    vi.advanceTimersByTime(1000);
    expect(ran).toEqual([]);
    scheduler.resume();
    vi.advanceTimersByTime(39);
    expect(ran).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ran).toEqual(['a']);
  });

  it('should queue work scheduled while paused until resume, and drop everything on dispose', () => {
    vi.useFakeTimers();
    const scheduler = new PausableScheduler();
    const ran: string[] = [];
    scheduler.pause();
    scheduler.schedule(0, () => ran.push('queued'));
    vi.advanceTimersByTime(10);
    expect(ran).toEqual([]);
    scheduler.resume();
    vi.advanceTimersByTime(0);
    expect(ran).toEqual(['queued']);
    scheduler.schedule(5, () => ran.push('dropped'));
    scheduler.dispose();
    vi.advanceTimersByTime(10);
    expect(ran).toEqual(['queued']);
  });
});

describe('kernel command line', () => {
  it.each([
    ['console=ttyS0 reboot=k', true],
    ['console=ttyS0,115200n8', true],
    ['console=tty0', false],
    ['reboot=k panic=1 8250.nr_uarts=0', false],
    ['console=ttyS0 8250.nr_uarts=0', false],
  ])('%j enables the serial console: %s', (commandLine, enabled) => {
    expect(serialConsoleEnabled(commandLine)).toBe(enabled);
  });

  it('should read values', () => {
    expect(commandLineValue('reboot=k panic=1', 'panic')).toBe('1');
    expect(commandLineValue('reboot=k', 'panic')).toBeUndefined();
  });
});

describe('SimulatedGuest', () => {
  function makeGuest(overrides: Partial<ConstructorParameters<typeof SimulatedGuest>[0]> = {}) {
    const output: string[] = [];
    const resets: string[] = [];
    const guest = new SimulatedGuest({
      console: new SerialConsole({ writeStdout: (text) => output.push(text) }),
      scheduler: new PausableScheduler(),
      readyLine: 'READY',
      guestReadyMs: 10,
      shutdownDelayMs: 5,
      consoleFloodBytes: 0,
      kernelPanic: false,
      ignoreCtrlAltDel: false,
      onReset: (reason) => resets.push(reason),
      ...overrides,
    });
    return { guest, output, resets };
  }

  const bootInfo = {
    commandLine: 'console=ttyS0 reboot=k panic=1',
    vcpuCount: 2,
    memSizeMib: 128,
    rootDevice: 'vda',
    networkInterfaceCount: 1,
    vsockEnabled: true,
  };

  it('should boot, print the readiness line and reset on Ctrl-Alt-Del', () => {
    vi.useFakeTimers();
    const { guest, output, resets } = makeGuest();
    guest.boot(bootInfo);
    expect(output.join('')).toContain('Command line: console=ttyS0 reboot=k panic=1');
    vi.advanceTimersByTime(10);
    expect(output.join('')).toContain('\nREADY\n');
    guest.ctrlAltDel();
    vi.advanceTimersByTime(5);
    expect(resets).toEqual(['guest reboot']);
    guest.dispose();
  });

  it('should print exactly the requested number of chatter bytes', () => {
    vi.useFakeTimers();
    const { guest, output } = makeGuest({ consoleFloodBytes: 100_000 });
    guest.boot(bootInfo);
    vi.runAllTimers();
    const all = output.join('');
    const chatter = all.slice(all.indexOf('READY\n') + 'READY\n'.length);
    expect(Buffer.byteLength(chatter)).toBe(100_000);
    guest.dispose();
  });

  it('should count uptime without pauses', () => {
    vi.useFakeTimers();
    const { guest } = makeGuest();
    guest.restore(5000);
    vi.advanceTimersByTime(100);
    guest.pause();
    vi.advanceTimersByTime(1000);
    guest.resume();
    vi.advanceTimersByTime(100);
    expect(guest.uptimeMs()).toBe(5200);
    guest.dispose();
  });
});
