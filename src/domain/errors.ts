/**
 * The one error vocabulary of the domain. Domain code throws these for requests that cannot be
 * answered (bad input, callers that may not ask, broken dependencies); expected "no" answers are
 * decision values, never errors. The transport maps each kind to a gRPC code in one place.
 */
export type ErrorKind =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "resource_exhausted"
  | "unavailable"
  | "deadline_exceeded"
  | "internal";

/** One bad field of a request, reported as a `google.rpc.BadRequest` field violation. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A typed failure with a stable machine-readable reason and a message safe to show a client. */
export class TollgateError extends Error {
  constructor(
    readonly kind: ErrorKind,
    /** UPPER_SNAKE_CASE reason, sent as `google.rpc.ErrorInfo.reason`. */
    readonly reason: string,
    message: string,
    readonly details: { violations?: FieldViolation[]; metadata?: Record<string, string>; retryAfterMs?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TollgateError";
  }
}

/** A request field is missing or malformed. */
export function invalidArgument(field: string, description: string): TollgateError {
  return new TollgateError("invalid_argument", "INVALID_ARGUMENT", `${field}: ${description}`, {
    violations: [{ field, description }],
  });
}

/** Collects field violations so that one response reports every bad field at once. */
export class Violations {
  private readonly list: FieldViolation[] = [];

  add(field: string, description: string): this {
    this.list.push({ field, description });
    return this;
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  /** Throws an INVALID_ARGUMENT error naming every collected field, if there are any. */
  throwIfAny(): void {
    if (this.list.length === 0) return;
    const message = this.list.map((v) => `${v.field}: ${v.description}`).join("; ");
    throw new TollgateError("invalid_argument", "INVALID_ARGUMENT", message, { violations: [...this.list] });
  }
}

/** The caller did not prove who it is (admin surfaces). */
export function unauthenticated(reason: string, message: string): TollgateError {
  return new TollgateError("unauthenticated", reason, message);
}

/** The caller is known but may not do this. */
export function permissionDenied(reason: string, message: string): TollgateError {
  return new TollgateError("permission_denied", reason, message);
}

/** The named thing does not exist (or the caller may not know that it does). */
export function notFound(what: string, id: string): TollgateError {
  return new TollgateError("not_found", `${what.toUpperCase()}_NOT_FOUND`, `${what} "${id}" not found`, { metadata: { [what]: id } });
}

/** A dependency (the database) is unreachable or failing; the cause is logged, never sent. */
export function unavailable(reason: string, message: string, cause?: unknown): TollgateError {
  return new TollgateError("unavailable", reason, message, {}, { cause });
}
