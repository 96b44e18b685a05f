/**
 * One status line on stderr, redrawn in place on a terminal and written once per change of
 * whole percent elsewhere (logs stay readable when the output is a file or CI).
 */
export class ProgressLine {
  #last = '';
  #lastPercent = -1;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(text: string, percent?: number): void {
    if (this.stream.isTTY) {
      const width = this.stream.columns || 100;
      this.stream.write(`\r${text.slice(0, width - 1).padEnd(Math.min(width - 1, this.#last.length))}`);
      this.#last = text;
    } else if (percent === undefined || Math.floor(percent) !== this.#lastPercent) {
      this.stream.write(`${text}\n`);
      this.#lastPercent = percent === undefined ? -1 : Math.floor(percent);
    }
  }

  done(text?: string): void {
    if (this.stream.isTTY && this.#last) this.stream.write('\n');
    if (text) this.stream.write(`${text}\n`);
    this.#last = '';
  }
}

/** `[########........]` for a fraction 0…1. */
export function bar(fraction: number, width = 20): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}
