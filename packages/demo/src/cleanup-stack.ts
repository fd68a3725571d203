/** One thing the demo created and how to remove it again. */
export interface CleanupStep {
  description: string;
  remove: () => Promise<unknown>;
}

export interface CleanupFailure {
  description: string;
  error: unknown;
}

/**
 * Everything the demo creates is registered here the moment it exists, so any ending (success, an error, Ctrl-C)
 * removes exactly what is there, newest first: the VM before the namespace it lives in, the namespaces before the
 * temp dir.
 */
export class CleanupStack {
  readonly #steps: CleanupStep[] = [];
  #run: Promise<CleanupFailure[]> | undefined;
  readonly #late: Promise<CleanupFailure[]>[] = [];

  /** Registers a removal. After `run()` has started, the removal runs at once: nothing may outlive the stack. */
  defer(description: string, remove: () => Promise<unknown>): void {
    const step = { description, remove };
    if (this.#run) this.#late.push(this.#run.then(() => runSteps([step])));
    else this.#steps.push(step);
  }

  /** What is still registered, newest first (for a message when the cleanup itself is cut short). */
  get pending(): string[] {
    return this.#steps.map((step) => step.description).reverse();
  }

  get started(): boolean {
    return this.#run !== undefined;
  }

  /** Runs every step once, newest first; a failing step does not stop the others. Safe to call repeatedly. */
  run(): Promise<CleanupFailure[]> {
    this.#run ??= runSteps(this.#steps.splice(0).reverse());
    return this.#run;
  }

  /** `run()`, plus the steps registered after it started. */
  async settled(): Promise<CleanupFailure[]> {
    const failures = await this.run();
    const late = await Promise.all(this.#late);
    return [...failures, ...late.flat()];
  }
}

async function runSteps(steps: CleanupStep[]): Promise<CleanupFailure[]> {
  const failures: CleanupFailure[] = [];
  for (const step of steps) {
    try {
      await step.remove();
    } catch (error) {
      failures.push({ description: step.description, error });
    }
  }
  return failures;
}
