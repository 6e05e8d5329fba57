import { invalidArgument, type TollgateError } from "../domain/errors.js";

/**
 * Permission queries: `chat:write AND (files:read OR admin)`.
 *
 * Grammar (AND binds tighter than OR; both are left-associative and case-insensitive keywords,
 * so no permission can be named `and` or `or`):
 *
 *   query  := or
 *   or     := and ( "OR" and )*
 *   and    := atom ( "AND" atom )*
 *   atom   := permission | "(" or ")"
 *
 * A permission here is concrete (no `*`). The parser is iterative (an explicit operator stack,
 * no recursion) and bounded: at most MAX_QUERY_LENGTH characters, MAX_QUERY_DEPTH nested
 * parentheses and MAX_QUERY_TERMS permissions, so hostile input costs linear time and constant
 * stack. Errors name a 1-based character position.
 */
export const MAX_QUERY_LENGTH = 4096;
export const MAX_QUERY_DEPTH = 32;
export const MAX_QUERY_TERMS = 128;

/** A parsed query. AND and OR nodes are flattened (`a AND b AND c` is one node of three). */
export type QueryNode =
  | { readonly op: "perm"; readonly name: string }
  | { readonly op: "and" | "or"; readonly children: readonly QueryNode[] };

/** A parse failure: a message and the 1-based position it refers to. */
export interface QueryError {
  message: string;
  position: number;
}

type Token = { kind: "perm"; text: string; at: number } | { kind: "and" | "or" | "(" | ")"; at: number };

// `*` is scanned as part of a word only to explain that queries take no wildcards.
const PERMISSION_CHAR = /[A-Za-z0-9_.:*-]/;
const CONCRETE = /^[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9][A-Za-z0-9_.-]*)*$/;

function tokenize(text: string): Token[] | QueryError {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") i++;
    else if (ch === "(" || ch === ")") tokens.push({ kind: ch, at: ++i });
    else if (PERMISSION_CHAR.test(ch)) {
      const start = i;
      while (i < text.length && PERMISSION_CHAR.test(text[i]!)) i++;
      const word = text.slice(start, i);
      const upper = word.toUpperCase();
      if (upper === "AND" || upper === "OR") tokens.push({ kind: upper === "AND" ? "and" : "or", at: start + 1 });
      else if (word.includes("*")) return { message: `"${word.slice(0, 64)}" has a wildcard; queries name concrete permissions (wildcards belong in grants)`, position: start + 1 };
      else if (!CONCRETE.test(word)) return { message: `"${word.slice(0, 64)}" is not a permission such as chat:write`, position: start + 1 };
      else tokens.push({ kind: "perm", text: word, at: start + 1 });
    } else {
      return { message: `unexpected character ${JSON.stringify(ch)}`, position: i + 1 };
    }
  }
  return tokens;
}

/** Pops operators of at least `minPrecedence` off the stack, combining operands (AND=2, OR=1). */
function reduce(operands: QueryNode[], operators: Token[], minPrecedence: number): void {
  for (;;) {
    const top = operators[operators.length - 1];
    if (!top || top.kind === "(" || (top.kind === "or" ? 1 : 2) < minPrecedence) return;
    operators.pop();
    const right = operands.pop()!;
    const left = operands.pop()!;
    const op = top.kind as "and" | "or";
    const children = left.op === op ? [...left.children, right] : [left, right];
    operands.push({ op, children });
  }
}

/** Checks the token sequence and builds the tree with a shunting-yard pass. */
function build(tokens: Token[], length: number): QueryNode | QueryError {
  const operands: QueryNode[] = [];
  const operators: Token[] = [];
  let expectOperand = true;
  let depth = 0;
  let terms = 0;
  for (const t of tokens) {
    if (expectOperand) {
      if (t.kind === "perm") {
        if (++terms > MAX_QUERY_TERMS) return { message: `more than ${MAX_QUERY_TERMS} permissions`, position: t.at };
        operands.push({ op: "perm", name: t.text });
        expectOperand = false;
      } else if (t.kind === "(") {
        if (++depth > MAX_QUERY_DEPTH) return { message: `parentheses nested deeper than ${MAX_QUERY_DEPTH}`, position: t.at };
        operators.push(t);
      } else return { message: `expected a permission or "(", found ${describe(t)}`, position: t.at };
    } else if (t.kind === "and" || t.kind === "or") {
      reduce(operands, operators, t.kind === "and" ? 2 : 1);
      operators.push(t);
      expectOperand = true;
    } else if (t.kind === ")") {
      reduce(operands, operators, 0);
      if (operators.pop()?.kind !== "(") return { message: `unmatched ")"`, position: t.at };
      depth--;
    } else return { message: `expected AND, OR or ")", found ${describe(t)}`, position: t.at };
  }
  if (tokens.length === 0) return { message: "the query is empty", position: 1 };
  if (expectOperand) return { message: "the query ends where a permission was expected", position: length + 1 };
  reduce(operands, operators, 0);
  const open = operators.find((o) => o.kind === "(");
  if (open) return { message: `"(" is never closed`, position: open.at };
  return operands[0]!;
}

function describe(t: Token): string {
  return t.kind === "perm" ? `permission "${t.text.slice(0, 64)}"` : t.kind === "and" || t.kind === "or" ? t.kind.toUpperCase() : `"${t.kind}"`;
}

/** Parses a query, returning the tree or the first error with its position. Never throws. */
export function parseQuery(text: string): QueryNode | QueryError {
  if (text.length > MAX_QUERY_LENGTH) return { message: `longer than ${MAX_QUERY_LENGTH} characters`, position: MAX_QUERY_LENGTH + 1 };
  const tokens = tokenize(text);
  return Array.isArray(tokens) ? build(tokens, text.length) : tokens;
}

/** True when `parseQuery` failed. */
export function isQueryError(result: QueryNode | QueryError): result is QueryError {
  return "message" in result;
}

/** The INVALID_ARGUMENT error for a failed parse of `field`. */
export function queryError(field: string, error: QueryError): TollgateError {
  return invalidArgument(field, `${error.message} at position ${error.position}`);
}

/** Every distinct permission a query names, in order of first appearance. */
export function permissionsOf(node: QueryNode): string[] {
  const out = new Set<string>();
  const stack: QueryNode[] = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (n.op === "perm") out.add(n.name);
    else for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]!);
  }
  return [...out];
}
