/**
 * A value, or a promise of it. Hot paths answer their warm case (a cached key, locally held
 * quota tokens) synchronously and only fall back to a promise when they must wait, so the
 * caller skips a microtask hop per step. Callers `await` only when `isPromise` says so.
 */
export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return value instanceof Promise;
}
