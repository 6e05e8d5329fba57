/**
 * Our own Envoy protos (proto/envoy/...) must be wire- and name-compatible with Envoy's official
 * definitions: every message, field and enum value we declare exists there with the same full
 * name, number, type and cardinality, and no field of a message we declare is missing.
 */
import path from "node:path";
import type { DescEnum, DescField, DescFile, DescMessage } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { file_envoy_service_auth_v3_external_auth } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { file_envoy_service_ratelimit_v3_rls } from "../src/gen/envoy/service/ratelimit/v3/rls_pb.js";
import { OFFICIAL_INCLUDE_DIRS } from "./support/envoy-harness.js";

function officialRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of OFFICIAL_INCLUDE_DIRS) {
      const candidate = path.join(dir, target);
      if (protobuf.util.fs?.existsSync?.(candidate)) return candidate;
    }
    return target; // google/protobuf/* come bundled with protobufjs
  };
  root.loadSync(["envoy/service/auth/v3/external_auth.proto", "envoy/service/ratelimit/v3/rls.proto"], { keepCase: true });
  root.resolveAll();
  return root;
}

/** Our envoy files, with everything they import from the envoy packages. */
function ourEnvoyFiles(): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name) || !f.name.startsWith("envoy/")) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  [file_envoy_service_auth_v3_external_auth, file_envoy_service_ratelimit_v3_rls].forEach(visit);
  return [...seen.values()];
}

function allMessages(messages: readonly DescMessage[]): DescMessage[] {
  return messages.flatMap((m) => [m, ...allMessages(m.nestedMessages)]);
}

const SCALAR: Record<number, string> = {
  [ScalarType.STRING]: "string", [ScalarType.BYTES]: "bytes", [ScalarType.BOOL]: "bool", [ScalarType.UINT32]: "uint32",
  [ScalarType.INT32]: "int32", [ScalarType.INT64]: "int64", [ScalarType.UINT64]: "uint64", [ScalarType.DOUBLE]: "double",
};

/** A field's shape as "cardinality type", comparable across both implementations. */
function ours(f: DescField): string {
  const typeOf = (kind: "scalar" | "message" | "enum", scalar?: ScalarType, message?: DescMessage, e?: DescEnum) =>
    kind === "scalar" ? SCALAR[scalar!] : `.${kind === "message" ? message!.typeName : e!.typeName}`;
  switch (f.fieldKind) {
    case "map":
      return `map<${SCALAR[f.mapKey]}> ${typeOf(f.mapKind, f.scalar, f.message, f.enum)}`;
    case "list":
      return `repeated ${typeOf(f.listKind, f.scalar, f.message, f.enum)}`;
    default:
      return `single ${typeOf(f.fieldKind, f.scalar, f.message, f.enum)}`;
  }
}

function official(f: protobuf.Field): string {
  const type = f.resolvedType ? f.resolvedType.fullName : f.type;
  if (f instanceof protobuf.MapField) return `map<${f.keyType}> ${type}`;
  return `${f.repeated ? "repeated" : "single"} ${type}`;
}

describe("our Envoy protos against the official definitions", () => {
  const root = officialRoot();
  const files = ourEnvoyFiles();

  it("covers the ext_authz and RLS files and what they import", () => {
    expect(files.map((f) => f.proto.name).sort()).toEqual([
      "envoy/config/core/v3/address.proto",
      "envoy/config/core/v3/base.proto",
      "envoy/extensions/common/ratelimit/v3/ratelimit.proto",
      "envoy/service/auth/v3/attribute_context.proto",
      "envoy/service/auth/v3/external_auth.proto",
      "envoy/service/ratelimit/v3/rls.proto",
      "envoy/type/v3/http_status.proto",
      "envoy/type/v3/ratelimit_unit.proto",
    ]);
  });

  it("declares every message with exactly the official fields: names, numbers, types, cardinality, oneofs", () => {
    for (const message of files.flatMap((f) => allMessages(f.messages))) {
      const theirs = root.lookupType(message.typeName);
      const mine = Object.fromEntries(message.fields.map((f) => [f.name, [f.number, ours(f), f.oneof?.name ?? null]]));
      const expected = Object.fromEntries(theirs.fieldsArray.map((f) => [f.name, [f.id, official(f), f.partOf && !f.partOf.name.startsWith("_") ? f.partOf.name : null]]));
      expect({ [message.typeName]: mine }).toEqual({ [message.typeName]: expected });
    }
  });

  it("declares every enum with exactly the official values", () => {
    const enums = files.flatMap((f) => [...f.enums, ...allMessages(f.messages).flatMap((m) => m.nestedEnums)]);
    expect(enums.length).toBeGreaterThan(5);
    for (const e of enums) {
      const theirs = root.lookupEnum(e.typeName);
      expect({ [e.typeName]: Object.fromEntries(e.values.map((v) => [v.name, v.number])) }).toEqual({ [e.typeName]: theirs.values });
    }
  });

  it("serves the official services and methods with the official request and response types", () => {
    for (const service of files.flatMap((f) => f.services)) {
      const theirs = root.lookupService(service.typeName);
      expect(service.methods.map((m) => [m.name, `.${m.input.typeName}`, `.${m.output.typeName}`])).toEqual(
        theirs.methodsArray.map((m) => [m.name, m.resolvedRequestType!.fullName, m.resolvedResponseType!.fullName]),
      );
    }
  });
});
