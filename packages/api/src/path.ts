/** A field path as both a printable string (`spec.http[0].route`) and raw segments (for line lookup). */
export class FieldPath {
  private constructor(
    readonly text: string,
    readonly segments: readonly (string | number)[],
  ) {}

  /** The empty path (the document root). */
  static readonly root = new FieldPath('', []);

  /** A message field: `a.b`. */
  field(name: string): FieldPath {
    return new FieldPath(this.text === '' ? name : `${this.text}.${name}`, [...this.segments, name]);
  }

  /** A list element: `a[3]`. */
  index(i: number): FieldPath {
    return new FieldPath(`${this.text}[${i}]`, [...this.segments, i]);
  }

  /** A map entry: `a[key]` (the key is JSON-quoted when it contains brackets, quotes or spaces). */
  key(k: string): FieldPath {
    const shown = /^[^[\]"\s]+$/.test(k) ? k : JSON.stringify(k);
    return new FieldPath(`${this.text}[${shown}]`, [...this.segments, k]);
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
