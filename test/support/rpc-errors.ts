import { Code as RpcCode, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { BadRequestSchema, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";

/** What a failed RPC carried: its code, ErrorInfo reason and metadata, and the BadRequest fields. */
export interface RpcFailure {
  code: RpcCode;
  reason: string;
  metadata: Record<string, string>;
  fields: string[];
  message: string;
}

/** Awaits a call that must fail and returns what its error carried (fails the test if it succeeds). */
export async function rpcFailure(call: Promise<unknown>): Promise<RpcFailure> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the call should have failed").toBeInstanceOf(ConnectError);
  const e = err as ConnectError;
  const info = e.findDetails(ErrorInfoSchema)[0];
  return {
    code: e.code,
    reason: info?.reason ?? "",
    metadata: info?.metadata ?? {},
    fields: e.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field)),
    message: e.rawMessage,
  };
}
