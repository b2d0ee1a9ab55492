/** The one error type of the SDK: the server's `__type` becomes `name`, as in the AWS SDKs. */
export class PersonalizeError extends Error {
  /** HTTP status; 0 when the request never got an answer (network error, CORS, offline). */
  readonly status: number;
  /** From the Retry-After header, in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(name: string, message: string, status: number, retryAfterMs?: number) {
    super(message);
    this.name = name;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  /** Network errors, throttling (429, or ThrottlingException: AWS sends it with 400) and 5xx are
   * worth retrying; any other 4xx is not. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500
      || this.name === 'ThrottlingException';
  }
}
