/**
 * A field path as both a printable string (`spec.http[0].route`) and raw segments (for line lookup).
 * Built as a linked list, so extending a path is O(1); text and segments are computed on demand
 * (only for paths that end up in an error).
 */
export class FieldPath {
  private textCache: string | undefined;
  private segmentsCache: readonly (string | number)[] | undefined;

  private constructor(
    private readonly parent: FieldPath | undefined,
    private readonly segment: string | number,
    private readonly kind: 'root' | 'field' | 'index' | 'key',
  ) {}

  /** The empty path (the document root). */
  static readonly root = new FieldPath(undefined, '', 'root');

  /** A message field: `a.b`. */
  field(name: string): FieldPath {
    return new FieldPath(this, name, 'field');
  }

  /** A list element: `a[3]`. */
  index(i: number): FieldPath {
    return new FieldPath(this, i, 'index');
  }

  /** A map entry: `a[key]` (the key is JSON-quoted when it contains brackets, quotes or spaces). */
  key(k: string): FieldPath {
    return new FieldPath(this, k, 'key');
  }

  /** The printable path, e.g. `spec.http[0].match[0].headers[x-user]`. */
  get text(): string {
    if (this.textCache === undefined) {
      const parent = this.parent?.text ?? '';
      const seg = this.segment;
      if (this.kind === 'root') this.textCache = '';
      else if (this.kind === 'field') this.textCache = parent === '' ? String(seg) : `${parent}.${seg}`;
      else if (this.kind === 'index') this.textCache = `${parent}[${seg}]`;
      else {
        const k = String(seg);
        this.textCache = `${parent}[${/^[^[\]"\s]+$/.test(k) ? k : JSON.stringify(k)}]`;
      }
    }
    return this.textCache;
  }

  /** The raw segments: field names and map keys as strings, list indices as numbers. */
  get segments(): readonly (string | number)[] {
    if (this.segmentsCache === undefined) {
      this.segmentsCache = this.parent === undefined ? [] : [...this.parent.segments, this.segment];
    }
    return this.segmentsCache;
  }
}

/** A problem found at a path, before it is attached to an object. */
export interface RawError {
  readonly path: FieldPath;
  readonly message: string;
}

/** Collects errors during one validation run. */
export class Reporter {
  readonly errors: RawError[] = [];
  readonly warnings: RawError[] = [];

  /** Records the error `message` at `path`. */
  add(path: FieldPath, message: string): void {
    this.errors.push({ path, message });
  }

  /** Records a warning: the object stays valid (Istio's deprecation and "probably a mistake" notes). */
  warn(path: FieldPath, message: string): void {
    this.warnings.push({ path, message });
  }
}
