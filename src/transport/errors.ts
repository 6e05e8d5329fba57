import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { TollgateError, type ErrorKind } from "../domain/errors.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";

/** `google.rpc.ErrorInfo.domain` of every error we send. */
export const ERROR_DOMAIN = "tollgate.dev";

const CODES: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/**
 * The one place errors become RPC errors. Domain errors keep their code, public message and
 * details (ErrorInfo always; BadRequest field violations; RetryInfo). Anything else is a bug:
 * INTERNAL with a generic message — the cause is logged by the caller, never sent.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    if (err.details.length > 0) return err;
    const reason = Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    return new ConnectError(err.rawMessage, err.code, err.metadata, [{ desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN } }], err.cause);
  }
  if (err instanceof TollgateError) {
    const details: ConstructorParameters<typeof ConnectError>[3] = [
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: err.reason, domain: ERROR_DOMAIN, metadata: err.details.metadata ?? {} }) },
    ];
    if (err.details.violations?.length) {
      details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: err.details.violations }) });
    }
    if (err.details.retryAfterMs !== undefined) {
      details.push({ desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(err.details.retryAfterMs) }) });
    }
    return new ConnectError(err.message, CODES[err.kind], undefined, details, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, [{ desc: ErrorInfoSchema, value: { reason: "INTERNAL", domain: ERROR_DOMAIN } }], err);
}
