/**
 * A FIFO mutex: one holder at a time, waiters served in arrival order.
 * Firecracker serves one request at a time anyway; holding the slot for the whole exchange keeps a
 * slow call from being overtaken and keeps exactly one request on the wire.
 */
export class RequestQueue {
  #busy = false;
  readonly #waiters: Waiter[] = [];
  readonly #idleListeners: (() => void)[] = [];

  /** Resolves with a release function once it is the caller's turn; rejects with the signal's reason if aborted first. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve(this.#releaseOnce());
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.#releaseOnce());
        },
        fail: (reason) => {
          signal.removeEventListener('abort', onAbort);
          reject(reason);
        },
      };
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Rejects every waiter that has not started yet. The current holder keeps its slot. */
  rejectWaiting(reason: unknown): void {
    for (const waiter of this.#waiters.splice(0)) waiter.fail(reason);
  }

  /** Resolves when nobody holds the slot and nobody waits. */
  whenIdle(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((resolve) => this.#idleListeners.push(resolve));
  }

  #releaseOnce(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next !== undefined) {
        next.start();
        return;
      }
      this.#busy = false;
      for (const listener of this.#idleListeners.splice(0)) listener();
    };
  }
}

interface Waiter {
  start: () => void;
  fail: (reason: unknown) => void;
}
