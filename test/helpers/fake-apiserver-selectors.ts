/**
 * Label and field selectors as the kube-apiserver parses them (the subset client-go emits).
 *
 * Label grammar (k8s.io/apimachinery/pkg/labels): comma-separated requirements, each one of
 * `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist),
 * `k>n`, `k<n`. `!=` and `notin` also match objects that lack the label.
 *
 * Field grammar (k8s.io/apimachinery/pkg/fields): comma-separated `f=v`, `f==v`, `f!=v`, where
 * `\,` `\=` `\\` escape; only the fields each resource registers are accepted.
 */

export class SelectorError extends Error {}

type LabelRequirement =
  | { readonly key: string; readonly op: 'eq' | 'neq'; readonly value: string }
  | { readonly key: string; readonly op: 'in' | 'notin'; readonly values: readonly string[] }
  | { readonly key: string; readonly op: 'exists' | 'notexists' }
  | { readonly key: string; readonly op: 'gt' | 'lt'; readonly n: number };

export type LabelMatcher = (labels: Readonly<Record<string, string>> | undefined) => boolean;

const KEY = String.raw`(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?`;
const VALUE = String.raw`(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?`;
const RE_NOT_EXISTS = new RegExp(`^!\\s*(${KEY})$`);
const RE_EXISTS = new RegExp(`^(${KEY})$`);
const RE_SET = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^()]*)\\)$`);
const RE_EQ = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`);
const RE_CMP = new RegExp(`^(${KEY})\\s*([<>])\\s*(-?\\d+)$`);
const RE_VALUE = new RegExp(`^${VALUE}$`);

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

function parseRequirement(raw: string): LabelRequirement {
  const s = raw.trim();
  let m: RegExpExecArray | null;
  if ((m = RE_NOT_EXISTS.exec(s))) return { key: m[1]!, op: 'notexists' };
  if ((m = RE_SET.exec(s))) {
    const values = m[3]!.split(',').map((v) => v.trim());
    for (const v of values) {
      if (!RE_VALUE.test(v)) throw new SelectorError(`unable to parse requirement: invalid label value: "${v}"`);
    }
    return { key: m[1]!, op: m[2] === 'in' ? 'in' : 'notin', values };
  }
  if ((m = RE_EQ.exec(s))) return { key: m[1]!, op: m[2] === '!=' ? 'neq' : 'eq', value: m[3]! };
  if ((m = RE_CMP.exec(s))) return { key: m[1]!, op: m[2] === '>' ? 'gt' : 'lt', n: Number(m[3]) };
  if ((m = RE_EXISTS.exec(s))) return { key: m[1]!, op: 'exists' };
  throw new SelectorError(`unable to parse requirement: found '${s}', expected a label requirement`);
}

function matchesRequirement(r: LabelRequirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  const v = has ? labels[r.key] : undefined;
  switch (r.op) {
    case 'eq':
      return has && v === r.value;
    case 'neq':
      return !has || v !== r.value;
    case 'in':
      return has && r.values.includes(v!);
    case 'notin':
      return !has || !r.values.includes(v!);
    case 'exists':
      return has;
    case 'notexists':
      return !has;
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(v!)) return false;
      return r.op === 'gt' ? Number(v) > r.n : Number(v) < r.n;
    }
  }
}

/** Parses a labelSelector; an empty or missing selector matches everything. Throws SelectorError. */
export function parseLabelSelector(selector: string | null | undefined): LabelMatcher {
  if (selector === null || selector === undefined || selector.trim() === '') return () => true;
  const reqs = splitTopLevel(selector).map(parseRequirement);
  return (labels) => reqs.every((r) => matchesRequirement(r, labels ?? {}));
}

export type FieldMatcher = (obj: unknown) => boolean;

interface FieldRequirement {
  readonly field: string;
  readonly neq: boolean;
  readonly value: string;
}

function unescapeField(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

/** Splits on unescaped occurrences of `sep`. */
function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1]!;
      i++;
    } else if (ch === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

function parseFieldRequirement(raw: string): FieldRequirement {
  const s = raw.trim();
  // Find the first unescaped operator.
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\') {
      i++;
      continue;
    }
    if (ch === '!' && s[i + 1] === '=') {
      return { field: s.slice(0, i).trim(), neq: true, value: unescapeField(s.slice(i + 2)) };
    }
    if (ch === '=') {
      const skip = s[i + 1] === '=' ? 2 : 1;
      return { field: s.slice(0, i).trim(), neq: false, value: unescapeField(s.slice(i + skip)) };
    }
  }
  throw new SelectorError(`invalid selector: '${s}'; can't understand '${s}'`);
}

function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

/**
 * Parses a fieldSelector against the fields a resource supports (`supported` maps the field name
 * to a function giving its string value; missing fields compare as ''). Throws SelectorError,
 * with the apiserver's message for an unsupported field.
 */
export function parseFieldSelector(
  selector: string | null | undefined,
  supported: ReadonlySet<string>,
  defaults: Readonly<Record<string, string>> = {},
): FieldMatcher {
  if (selector === null || selector === undefined || selector.trim() === '') return () => true;
  const reqs = splitUnescaped(selector, ',').map(parseFieldRequirement);
  for (const r of reqs) {
    if (!supported.has(r.field)) throw new SelectorError(`field label not supported: ${r.field}`);
  }
  return (obj) =>
    reqs.every((r) => {
      const raw = fieldValue(obj, r.field);
      const v = raw === '' ? (defaults[r.field] ?? '') : raw;
      return r.neq ? v !== r.value : v === r.value;
    });
}
