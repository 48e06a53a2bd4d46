/** Errors the CLI reports itself; light, so the command line can name them before any command's module loads. */

/** A failure the CLI reports as one line and a non-zero exit. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}
