import { describe, expect, it } from "vitest";
import { unwrapCredential } from "../src/keys/format.js";

describe("unwrapCredential", () => {
  // The bare-key shortcut must give what the trim-and-scheme rules give for every shape of input.
  it.each([
    ["sk_live_abc", "sk_live_abc"],
    ["  sk_live_abc\t", "sk_live_abc"],
    ["sk_live_abc\n", "sk_live_abc"],
    ["\u00a0sk_live_abc\u00a0", "sk_live_abc"],
    ["Bearer sk_live_abc", "sk_live_abc"],
    ["bearer\tsk_live_abc ", "sk_live_abc"],
    ["BEARER  sk_live_abc", "sk_live_abc"],
    ["Bearer", ""],
    ["bearer ", ""],
    ["bearerx", "bearerx"],
    ["b_key", "b_key"],
    ["Basic abc", "Basic abc"],
    ["", ""],
    ["   ", ""],
    ["x", "x"],
  ])("%j → %j", (raw, expected) => {
    expect(unwrapCredential(raw)).toBe(expected);
  });
});
