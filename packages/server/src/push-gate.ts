/**
 * Holds a debounced change until the previous push has gone out. Under steady change a push context
 * every quiet period would be built faster than the proxies can be pushed; the push queue merges
 * what each proxy gets anyway, so the contexts in between would be built for nobody. The gate runs
 * the build when no push is queued or in flight, or when the burst has waited its longest, and a
 * change that arrives meanwhile joins that one build.
 */
export interface PushesInFlight {
  /** Pushes queued or in flight. */
  readonly queuedPushes: number;
  /** Resolves when none are. */
  idle(): Promise<void>;
}

export class PushGate {
  #waiting = false;

  constructor(private readonly pushes: PushesInFlight) {}

  /** Whether a build is held, waiting for pushes. */
  get waiting(): boolean {
    return this.#waiting;
  }

  /**
   * Runs `build` now if nothing is being pushed, else once the pushes are done or at `deadline`
   * (`performance.now()` time), whichever is first. While one build is held, further calls join it.
   */
  run(deadline: number, build: () => void): void {
    if (this.#waiting) return;
    if (this.pushes.queuedPushes === 0) {
      build();
      return;
    }
    this.#waiting = true;
    let timer: NodeJS.Timeout | undefined;
    const go = () => {
      if (!this.#waiting) return;
      this.#waiting = false;
      clearTimeout(timer);
      build();
    };
    timer = setTimeout(go, Math.max(0, deadline - performance.now()));
    timer.unref();
    void this.pushes.idle().then(go);
  }
}
