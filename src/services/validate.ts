import { isIP } from "node:net";
import { PREFIX_PATTERN } from "../config/config.js";
import { Violations } from "../domain/errors.js";
import { MAX_CREDENTIAL_LENGTH } from "../keys/format.js";
import { parseCidr, parseIp } from "../keys/ip.js";

/** Limits on admin-supplied fields; generous for real use, small enough to keep rows and caches lean. */
export const LIMITS = {
  nameLength: 200,
  permissions: 256,
  permissionLength: 128,
  roles: 64,
  metadataEntries: 32,
  metadataKeyLength: 64,
  metadataValueLength: 512,
  metadataBytes: 4096,
  ipAllowlist: 64,
  ownerIdLength: 128,
} as const;

export const TENANT_ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** `resource:action` strings, plain grants (`read`) and wildcards (`chat:*`, `*`). */
export const PERMISSION_PATTERN = /^(?:\*|[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?:\*|[A-Za-z0-9][A-Za-z0-9_.-]*))*$/;
export const NAME_TOKEN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** Checks a credential field's size only: its shape is a decision (MALFORMED_CREDENTIAL), not an error. */
export function checkCredential(v: Violations, field: string, value: string): void {
  if (value.length > MAX_CREDENTIAL_LENGTH) v.add(field, `must be at most ${MAX_CREDENTIAL_LENGTH} characters`);
}

export function checkClientIp(v: Violations, field: string, value: string): void {
  // node:net's native check first (cheap, and most addresses pass it); ipaddr.js for the rest.
  if (value !== "" && isIP(value) === 0 && !parseIp(value)) v.add(field, "must be an IPv4 or IPv6 address");
}

export function checkTenantId(v: Violations, field: string, value: string, required: boolean): void {
  if (value === "") {
    if (required) v.add(field, "is required");
  } else if (!TENANT_ID_PATTERN.test(value)) {
    v.add(field, "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit");
  }
}

export function checkName(v: Violations, field: string, value: string): void {
  if (value.length > LIMITS.nameLength) v.add(field, `must be at most ${LIMITS.nameLength} characters`);
  else if (/[\u0000-\u001f\u007f]/.test(value)) v.add(field, "must not contain control characters");
}

export function checkPermissions(v: Violations, field: string, values: readonly string[]): void {
  if (values.length > LIMITS.permissions) v.add(field, `at most ${LIMITS.permissions} entries`);
  values.forEach((p, i) => {
    if (p.length > LIMITS.permissionLength || !PERMISSION_PATTERN.test(p)) {
      v.add(`${field}[${i}]`, "must be a permission such as `read`, `chat:write` or `chat:*`");
    }
  });
}

export function checkTokens(v: Violations, field: string, values: readonly string[], max: number): void {
  if (values.length > max) v.add(field, `at most ${max} entries`);
  values.forEach((r, i) => {
    if (!NAME_TOKEN_PATTERN.test(r)) v.add(`${field}[${i}]`, "must be 1-64 letters, digits, '_', '.', ':' or '-'");
  });
}

export function checkMetadata(v: Violations, field: string, metadata: Record<string, string>): void {
  const entries = Object.entries(metadata);
  if (entries.length > LIMITS.metadataEntries) v.add(field, `at most ${LIMITS.metadataEntries} entries`);
  if (Buffer.byteLength(JSON.stringify(metadata)) > LIMITS.metadataBytes) v.add(field, `at most ${LIMITS.metadataBytes} bytes in all`);
  for (const [k, value] of entries) {
    if (k === "" || k.length > LIMITS.metadataKeyLength) v.add(`${field}[${JSON.stringify(k.slice(0, 70))}]`, `keys must be 1-${LIMITS.metadataKeyLength} characters`);
    if (value.length > LIMITS.metadataValueLength) v.add(`${field}[${JSON.stringify(k.slice(0, 70))}]`, `values must be at most ${LIMITS.metadataValueLength} characters`);
  }
}

export function checkCidrs(v: Violations, field: string, values: readonly string[]): void {
  if (values.length > LIMITS.ipAllowlist) v.add(field, `at most ${LIMITS.ipAllowlist} entries`);
  values.forEach((c, i) => {
    if (!parseCidr(c)) v.add(`${field}[${i}]`, `"${c.slice(0, 60)}" is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32`);
  });
}

export function checkPrefix(v: Violations, field: string, value: string): void {
  if (value !== "" && !PREFIX_PATTERN.test(value)) v.add(field, "must be lower-case letters and digits in up to three '_'-separated parts, e.g. `tk_live`");
}

export function checkEnvironment(v: Violations, field: string, value: string): void {
  if (value !== "" && value !== "live" && value !== "test") v.add(field, 'must be "live" or "test"');
}

export { Violations };
