/**
 * The access log reaches the process log's destination in batches: in order, complete, at least
 * when flushed, and without waiting for a flush once a batch is full.
 */
import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { createAccessLogger, createLogger, flushLogs, LineBatcher } from "../src/observability/logger.js";

function memory() {
  const writes: string[] = [];
  const stream = new Writable({ write(chunk: Buffer | string, _enc, done) { writes.push(String(chunk)); done(); } });
  return { stream, writes, lines: () => writes.join("").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("access log batching", () => {
  it("writes the access lines in order, with the process log's lines, once flushed", () => {
    const out = memory();
    const logger = createLogger("info", out.stream);
    const access = createAccessLogger(logger);
    for (let i = 0; i < 3; i++) access.info({ rpc: "x", n: i }, "rpc");
    expect(out.writes).toEqual([]); // batched, not yet written
    flushLogs(access);
    logger.info("after");
    expect(out.lines().map((l) => l.n ?? l.msg)).toEqual([0, 1, 2, "after"]);
    expect(out.writes.length).toBe(2); // one write for the batch, one for the process logger's line
  });

  it("hands a full batch on without a flush, joined into one write", () => {
    const writes: string[] = [];
    const batcher = new LineBatcher({ write: (s: string) => void writes.push(s) }, 100);
    for (let i = 0; i < 25; i++) batcher.write(`line ${String(i).padStart(2, "0")}\n`); // 8 chars each
    expect(writes.length).toBe(1); // 104 chars reached after 13 lines
    expect(writes[0]!.split("\n").filter(Boolean).length).toBe(13);
    let flushed = false;
    batcher.flush(() => (flushed = true));
    expect(flushed).toBe(true);
    expect(writes.join("").split("\n").filter(Boolean)).toEqual(Array.from({ length: 25 }, (_, i) => `line ${String(i).padStart(2, "0")}`));
  });

  it("writes a quiet access log out every 100 ms until its stop signal aborts, then only when flushed", () => {
    vi.useFakeTimers();
    try {
      const out = memory();
      const stop = new AbortController();
      const access = createAccessLogger(createLogger("info", out.stream), stop.signal);
      access.info({ rpc: "x", n: 1 }, "rpc");
      vi.advanceTimersByTime(100);
      expect(out.lines().map((l) => l.n)).toEqual([1]);
      stop.abort();
      access.info({ rpc: "x", n: 2 }, "rpc");
      vi.advanceTimersByTime(1_000);
      expect(out.lines().map((l) => l.n)).toEqual([1]); // no timer any more
      expect(vi.getTimerCount()).toBe(0);
      flushLogs(access);
      expect(out.lines().map((l) => l.n)).toEqual([1, 2]);
    } finally {
      vi.useRealTimers();
    }
  });
});
