// Progress of `meridian up`: one line per step. On a terminal a spinner turns while a step runs and
// the line is rewritten with its outcome; otherwise (a pipe, CI, a test) plain lines only.
import { type CliContext, processContext } from '../context.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Runs and reports the steps of one command. */
export class Progress {
  readonly #ctx: CliContext;
  readonly #tty: boolean;
  readonly #started = Date.now();

  constructor(ctx: CliContext, tty = process.stdout.isTTY === true && ctx === processContext) {
    this.#ctx = ctx;
    this.#tty = tty;
  }

  /** Seconds since the progress began, e.g. `12.3 s`. */
  elapsed(): string {
    return `${((Date.now() - this.#started) / 1000).toFixed(1)} s`;
  }

  /**
   * Runs one step: `title` while it runs; its result's text (or `done`) and duration when it ends.
   * A failure is reported on the step's line and rethrown.
   */
  async step<T>(
    title: string,
    run: (note: (detail: string) => void) => Promise<T>,
    summary?: (v: T) => string,
  ): Promise<T> {
    const t0 = Date.now();
    let detail = '';
    let frame = 0;
    const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    const timer = this.#tty
      ? setInterval(() => {
          process.stdout.write(
            `\r\x1b[2K${FRAMES[frame++ % FRAMES.length]} ${title}${detail ? `: ${detail}` : ''} (${secs()})`,
          );
        }, 100)
      : undefined;
    const note = (d: string) => {
      detail = d;
    };
    try {
      const v = await run(note);
      if (timer) clearInterval(timer);
      const s = summary ? summary(v) : typeof v === 'string' ? v : detail || 'done';
      if (this.#tty) process.stdout.write(`\r\x1b[2K✔ ${title}: ${s} (${secs()})\n`);
      else this.#ctx.out(`✔ ${title}: ${s} (${secs()})`);
      return v;
    } catch (error) {
      if (timer) clearInterval(timer);
      const line = `✘ ${title}: ${(error as Error).message.split('\n')[0]} (${secs()})`;
      if (this.#tty) process.stdout.write(`\r\x1b[2K${line}\n`);
      else this.#ctx.out(line);
      throw error;
    }
  }
}
