import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { encodeMessage } from "../src/transport/encode.js";
import { PrincipalSchema } from "../src/gen/tollgate/v1/common_pb.js";
import { ConsumeQuotaResponseSchema } from "../src/gen/tollgate/v1/quota_pb.js";
import { AuthenticateResponseSchema } from "../src/gen/tollgate/v1/authenticate_pb.js";
import { Code } from "../src/gen/tollgate/v1/code_pb.js";

const principal = () =>
  create(PrincipalSchema, { keyId: "k".repeat(16), tenantId: "acme", permissions: ["chat:write", "x".repeat(300)], metadata: { team: "ml" }, expiresAt: timestampFromMs(1_800_000_000_000) });

describe("encoding responses with frozen parts", () => {
  it("a message with a frozen sub-message decodes exactly like the plain encoding, bytes reused", () => {
    const shared = Object.freeze(principal());
    for (const remaining of [5n, 4n]) {
      const res = create(ConsumeQuotaResponseSchema, { allowed: true, code: Code.OK, headers: { "x-ratelimit-remaining": String(remaining) }, principal: shared, limits: [{ name: "requests", remaining }] });
      const spliced = encodeMessage(ConsumeQuotaResponseSchema, res);
      const plain = toBinary(ConsumeQuotaResponseSchema, res);
      expect(spliced.length).toBe(plain.length); // the same fields, in another order
      expect(equals(ConsumeQuotaResponseSchema, fromBinary(ConsumeQuotaResponseSchema, spliced), res)).toBe(true);
      expect(res.principal).toBe(shared); // the handler's message is not modified
    }
  });

  it("a frozen whole answer is encoded once and its bytes returned again; unfrozen answers are encoded afresh", () => {
    const answer = Object.freeze(create(AuthenticateResponseSchema, { valid: true, code: Code.VALID, principal: Object.freeze(principal()) }));
    const first = encodeMessage(AuthenticateResponseSchema, answer);
    expect(encodeMessage(AuthenticateResponseSchema, answer)).toBe(first);
    expect(equals(AuthenticateResponseSchema, fromBinary(AuthenticateResponseSchema, first), answer)).toBe(true);
    const fresh = create(AuthenticateResponseSchema, { valid: false, code: Code.INVALID_API_KEY });
    expect(encodeMessage(AuthenticateResponseSchema, fresh)).not.toBe(encodeMessage(AuthenticateResponseSchema, fresh));
  });
});
