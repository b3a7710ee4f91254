/**
 * Label selector syntax check (the grammar of apimachinery's `labels.Parse`), for the
 * `labels` and `namespaceLabels` options.
 *
 * Selectors are evaluated by the API server (list and watch take `labelSelector`), so we
 * never match labels ourselves; but a selector the server rejects would fail every list
 * with 400 forever, so it is refused up front with the reason, the way kubectl does.
 */

const NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function keyError(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !SUBDOMAIN.test(prefix))) {
    return `label key "${key}": the prefix must be a DNS subdomain`;
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return `label key "${key}": the name must be 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

function valueError(v: string): string | undefined {
  if (v === '') return undefined;
  if (v.length > 63 || !NAME.test(v)) {
    return `label value "${v}": must be at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

type Token = { t: 'id'; v: string } | { t: 'op'; v: string } | { t: 'p'; v: '(' | ')' | ',' };

function tokenize(s: string): Token[] | string {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '(' || c === ')' || c === ',') {
      out.push({ t: 'p', v: c });
      i++;
    } else if (s.startsWith('==', i) || s.startsWith('!=', i)) {
      out.push({ t: 'op', v: s.slice(i, i + 2) });
      i += 2;
    } else if (c === '=' || c === '>' || c === '<' || c === '!') {
      out.push({ t: 'op', v: c });
      i++;
    } else {
      let j = i;
      while (j < s.length && !' \t(),=!<>'.includes(s[j]!)) j++;
      out.push({ t: 'id', v: s.slice(i, j) });
      i = j;
    }
  }
  return out;
}

/** Why `selector` is not a valid label selector, or undefined when it is (empty selects everything). */
export function labelSelectorError(selector: string): string | undefined {
  const toks = tokenize(selector);
  if (typeof toks === 'string') return toks;
  let i = 0;
  const peek = (): Token | undefined => toks[i];
  const bad = (what: string): string => `label selector ${JSON.stringify(selector)}: ${what}`;
  if (toks.length === 0) return undefined;
  for (;;) {
    let tok = peek();
    let negated = false;
    if (tok?.t === 'op' && tok.v === '!') {
      negated = true;
      i++;
      tok = peek();
    }
    if (tok?.t !== 'id') return bad('expected a label key');
    const kErr = keyError(tok.v);
    if (kErr !== undefined) return bad(kErr);
    i++;
    const op = peek();
    if (negated || op === undefined || (op.t === 'p' && op.v === ',')) {
      // `key` / `!key` (existence)
    } else if (op.t === 'op' && ['=', '==', '!='].includes(op.v)) {
      i++;
      const v = peek();
      if (v?.t === 'id') {
        const vErr = valueError(v.v);
        if (vErr !== undefined) return bad(vErr);
        i++;
      }
    } else if (op.t === 'op' && (op.v === '>' || op.v === '<')) {
      i++;
      const v = peek();
      if (v?.t !== 'id' || !/^-?\d+$/.test(v.v)) return bad(`"${op.v}" needs an integer value`);
      i++;
    } else if (op.t === 'id' && (op.v === 'in' || op.v === 'notin')) {
      i++;
      if (peek()?.t !== 'p' || peek()?.v !== '(') return bad(`"${op.v}" needs a parenthesised list of values`);
      i++;
      let values = 0;
      for (;;) {
        const v = peek();
        if (v?.t === 'id') {
          const vErr = valueError(v.v);
          if (vErr !== undefined) return bad(vErr);
          values++;
          i++;
        }
        const sep = peek();
        if (sep?.t === 'p' && sep.v === ',') {
          i++;
          continue;
        }
        if (sep?.t === 'p' && sep.v === ')') {
          i++;
          break;
        }
        return bad(`unterminated value list after "${op.v}"`);
      }
      if (values === 0) return bad(`"${op.v}" needs at least one value`);
    } else {
      return bad(`unexpected ${JSON.stringify(op.v)} after "${tok.v}"`);
    }
    const next = peek();
    if (next === undefined) return undefined;
    if (next.t === 'p' && next.v === ',') {
      i++;
      continue;
    }
    return bad(`unexpected ${JSON.stringify(next.v)}`);
  }
}
