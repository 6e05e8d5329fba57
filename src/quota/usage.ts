import type { MinuteUsage } from "../store/quota-repo.js";
import type { QuotaSubject } from "./limits.js";

/** Accumulates usage in memory and writes it as roll-ups, one statement per flush (per 1,000 keys and limits). */
export interface UsageRecorder {
  /** Counts one call against one limit: admitted (with its cost) or denied. */
  record(subject: QuotaSubject, limitName: string, admitted: boolean, cost: number): void;
  /** Writes everything accumulated (minute, hour and day roll-ups): one statement per `chunkEntries` entries. */
  flush(): Promise<void>;
}

/**
 * Creates the recorder. Counts are kept per (key, limit, minute); the store adds each to its
 * minute, hour and day roll-ups. A failed flush keeps the counts for the next one, up to
 * `maxEntries` entries, beyond which new entries are dropped (and counted in `dropped`):
 * usage reporting must never take memory without bound while the database is away.
 *
 * Entries are found through their subject (one object per key record), never through a key
 * string: with many keys each called about once per flush, building and hashing a string per
 * call was a visible part of a ConsumeQuota (profile of 10,000 keys round-robin). An entry that
 * repeats another's (key, limit, minute) — a replaced key record, counts put back after a failed
 * write — is summed with it by the store's statement (GROUP BY), so none is lost or doubled.
 */
export function createUsageRecorder(write: (items: MinuteUsage[]) => Promise<void>, now: () => number, maxEntries = 100_000, chunkEntries = 1_000) {
  /** `generation`: the flush generation of `pending` the entry belongs to. */
  type Entry = { subject: QuotaSubject; limitName: string; minuteMs: number; admitted: number; denied: number; cost: number; generation: number };
  let pending: Entry[] = [];
  let dropped = 0;
  let generation = 0;
  // The entry each subject last counted into, per limit name: valid while it is in `pending`
  // (a flush takes the list and starts a new generation) and for the same minute.
  const recent = new WeakMap<QuotaSubject, Map<string, Entry>>();
  /** The entries as the store takes them (it rolls minutes up into hours and days). */
  function rowsOf(entries: Entry[]): MinuteUsage[] {
    return entries.map((e) => ({ minuteMs: e.minuteMs, tenantId: e.subject.tenantId, keyId: e.subject.keyId, limitName: e.limitName, admitted: e.admitted, denied: e.denied, cost: e.cost }));
  }

  /** Puts entries that were not written back, before what arrived since (bounded like `record`). */
  function keep(entries: Entry[]): void {
    const room = Math.max(0, maxEntries - pending.length);
    dropped += Math.max(0, entries.length - room);
    pending = entries.slice(0, room).concat(pending);
  }

  const recorder: UsageRecorder & { readonly dropped: number } = {
    get dropped() {
      return dropped;
    },
    record(subject, limitName, admitted, cost) {
      const minuteMs = Math.floor(now() / 60_000) * 60_000;
      let mine = recent.get(subject);
      let e = mine?.get(limitName);
      if (!e || e.minuteMs !== minuteMs || e.generation !== generation) {
        if (pending.length >= maxEntries) return void dropped++;
        pending.push((e = { subject, limitName, minuteMs, admitted: 0, denied: 0, cost: 0, generation }));
        if (!mine) recent.set(subject, (mine = new Map()));
        mine.set(limitName, e);
      }
      if (admitted) {
        e.admitted++;
        e.cost += cost;
      } else e.denied++;
    },
    async flush() {
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      generation++;
      // Chunks keep one statement (and the event loop's time building it) bounded with many keys;
      // between chunks the loop serves calls. A failed chunk keeps itself and the rest, not what was written.
      for (let i = 0; i < batch.length; i += chunkEntries) {
        try {
          await write(rowsOf(batch.slice(i, i + chunkEntries)));
        } catch (err) {
          keep(batch.slice(i));
          throw err;
        }
        if (i + chunkEntries < batch.length) await new Promise((resolve) => setImmediate(resolve));
      }
    },
  };
  return recorder;
}
