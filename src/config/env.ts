/** Environment variables as configuration reads them. */
export type Env = Record<string, string | undefined>;

/** Reads an integer variable within bounds, recording a problem (and using the default) when it is bad. */
export function intVar(env: Env, problems: string[], name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
    return def;
  }
  return value;
}
