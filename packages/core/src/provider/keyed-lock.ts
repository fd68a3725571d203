/**
 * One FIFO queue per key: operations on the same VM run one after another, operations on different VMs never
 * wait on each other.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => current);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await operation();
    } finally {
      release();
      // Forget the key when nobody queued behind us, so the map does not grow with every VM ever seen.
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
