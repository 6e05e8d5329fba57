/**
 * Calendar windows in UTC. A window is identified by an integer index so that every replica,
 * whatever its time zone, names the same window the same way: fixed windows count whole
 * seconds/minutes/hours/days since the Unix epoch, months count calendar months since January
 * 1970. A window is the half-open interval [start, end): the reset instant `end` already belongs
 * to the next window. UTC has no daylight saving, so every day is exactly 86,400 s long and a
 * month is its true calendar length (28, 29, 30 or 31 days; leap years included).
 */
export type Period = "second" | "minute" | "hour" | "day" | "month" | "none";

/** The periods a windowed quota may use ("none" is only for one-off budgets). */
export const PERIODS: readonly Period[] = ["second", "minute", "hour", "day", "month", "none"];

const FIXED_MS: Record<Exclude<Period, "month" | "none">, number> = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
};

/** A window: its index, and its start and end in Unix milliseconds (end exclusive; Infinity for "none"). */
export interface Window {
  index: number;
  startMs: number;
  endMs: number;
}

/** The index of the window of `period` that contains the instant `ms`. */
export function windowIndex(period: Period, ms: number): number {
  if (period === "none") return 0;
  if (period === "month") {
    const d = new Date(ms);
    return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  }
  return Math.floor(ms / FIXED_MS[period]);
}

/** The start (inclusive) of window `index` of `period`, in Unix milliseconds. */
export function windowStartMs(period: Period, index: number): number {
  if (period === "none") return 0;
  if (period === "month") return Date.UTC(1970 + Math.floor(index / 12), ((index % 12) + 12) % 12, 1);
  return index * FIXED_MS[period];
}

/** The window of `period` containing `ms`. */
export function windowAt(period: Period, ms: number): Window {
  const index = windowIndex(period, ms);
  const endMs = period === "none" ? Number.POSITIVE_INFINITY : windowStartMs(period, index + 1);
  return { index, startMs: windowStartMs(period, index), endMs };
}

/**
 * The nominal length of a period in seconds, as advertised in `RateLimit-Policy` (`w=`). A month
 * is advertised as the length of the month in progress at `ms`; "none" as 0 (no window).
 */
export function periodSeconds(period: Period, ms: number): number {
  if (period === "none") return 0;
  if (period === "month") {
    const w = windowAt(period, ms);
    return (w.endMs - w.startMs) / 1000;
  }
  return FIXED_MS[period] / 1000;
}
