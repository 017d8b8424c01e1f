// Network faults on loopback with iptables (the suite runs as root): a cut of every TCP segment to or
// from a set of ports, answered with a reset so both ends see the connection die at once. Each rule
// carries a comment naming the run, and `heal()` deletes exactly the rules it inserted.
import { execFileSync } from 'node:child_process';

export class PortCut {
  private readonly rules: string[][] = [];
  private readonly tag = `meridian-chaos-${process.pid}-${Date.now().toString(36)}`;

  constructor(private readonly ports: readonly number[]) {}

  static available(): boolean {
    try {
      execFileSync('iptables', ['-S', 'INPUT'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  }

  cut(): void {
    for (const port of this.ports)
      for (const dir of ['--dport', '--sport']) {
        const rule = [
          'INPUT',
          ...['-i', 'lo', '-p', 'tcp', dir, String(port)],
          // Not the resets themselves: they must reach the other end, or the cut is a silent blackhole.
          ...['!', '--tcp-flags', 'RST', 'RST'],
          ...['-m', 'comment', '--comment', this.tag],
          ...['-j', 'REJECT', '--reject-with', 'tcp-reset'],
        ];
        execFileSync('iptables', ['-I', ...rule]);
        this.rules.push(rule);
      }
  }

  /** Deletes every rule this cut inserted (idempotent). */
  heal(): void {
    while (this.rules.length > 0) {
      const rule = this.rules.pop()!;
      try {
        execFileSync('iptables', ['-D', ...rule], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}
