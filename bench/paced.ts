/**
 * An open-loop paced client: sends `rate` calls per second regardless of how fast answers come
 * back (as an attacker or a misbehaving client would), and tallies the outcomes.
 */
import type { Background, Extra } from "./scenario.js";

/**
 * Starts sending. `send` makes one call and resolves to an outcome label (for example the
 * decision code, or the RPC error code); a rejection is tallied as "error". Calls go out in
 * 10 ms ticks, so the rate holds even when timers fire late.
 */
export function paced(rate: number, send: () => Promise<string>): Background & { latenciesUs: number[] } {
  const outcomes = new Map<string, number>();
  const pending = new Set<Promise<void>>();
  const started = performance.now();
  const latenciesUs: number[] = [];
  let sent = 0;
  const tally = (label: string): void => void outcomes.set(label, (outcomes.get(label) ?? 0) + 1);
  const tick = () => {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    for (; sent < due; sent++) {
      const t0 = performance.now();
      const call: Promise<void> = send()
        .then(tally, () => tally("error"))
        .finally(() => {
          latenciesUs.push((performance.now() - t0) * 1000);
          pending.delete(call);
        });
      pending.add(call);
    }
  };
  const timer = setInterval(tick, 10);
  return {
    latenciesUs,
    async stop(): Promise<Extra> {
      clearInterval(timer);
      const seconds = (performance.now() - started) / 1000;
      await Promise.all([...pending]);
      const extra: Extra = { sent, sentPerSec: sent / seconds };
      for (const [label, count] of outcomes) extra[`outcome_${label}`] = count;
      return extra;
    },
  };
}
