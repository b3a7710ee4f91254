/**
 * Field-level validation errors, rendered exactly like apimachinery's
 * `k8s.io/apimachinery/pkg/util/validation/field` (`Error.Error()` / `ErrorBody()`), and
 * the two API status errors the service allocation path returns: 422 Invalid
 * (`errors.NewInvalid`) and 500 Internal (`errors.NewInternalError`).
 *
 * @module
 */
import { IpamError } from './errors.js';

/** The apimachinery error types this package produces. */
export type FieldErrorType = 'Required' | 'Invalid' | 'Forbidden' | 'NotSupported' | 'Duplicate' | 'Internal';

/** One field error, as `field.Error`. `value` is the bad value (not printed for Required/Forbidden/Internal). */
export interface FieldError {
  readonly type: FieldErrorType;
  /** Field path, e.g. `spec.clusterIPs[0]`. */
  readonly field: string;
  readonly value?: unknown;
  readonly detail: string;
}

const TYPE_TEXT: Record<FieldErrorType, string> = {
  Required: 'Required value',
  Invalid: 'Invalid value',
  Forbidden: 'Forbidden',
  NotSupported: 'Unsupported value',
  Duplicate: 'Duplicate value',
  Internal: 'Internal error',
};

/** Go `%q` for the ASCII strings we print (JSON quoting is identical for them). */
function goQuote(s: string): string {
  return JSON.stringify(s);
}

/** Go's rendering of a bad value: `%q` for strings, `%v` for numbers, `%#v` for `[]string`. */
function renderValue(v: unknown): string {
  if (v === undefined || v === null) return 'null';
  if (typeof v === 'string') return goQuote(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[]string{${v.map((x) => goQuote(String(x))).join(', ')}}`;
  return JSON.stringify(v);
}

/** `field.Error.ErrorBody()`: `Invalid value: "x": detail`, `Required value`, ... */
export function fieldErrorBody(e: FieldError): string {
  let s = TYPE_TEXT[e.type];
  if (e.type !== 'Required' && e.type !== 'Forbidden' && e.type !== 'Internal') {
    s += `: ${renderValue(e.value)}`;
  }
  if (e.detail !== '') s += `: ${e.detail}`;
  return s;
}

/** `field.Error.Error()`: `<field>: <body>`. */
export function formatFieldError(e: FieldError): string {
  return `${e.field}: ${fieldErrorBody(e)}`;
}

/** `field.ErrorList.ToAggregate().Error()`: one message as is, several as `[a, b]` (deduplicated). */
export function aggregateFieldErrors(errs: readonly FieldError[]): string {
  const msgs = [...new Set(errs.map(formatFieldError))];
  return msgs.length === 1 ? (msgs[0] ?? '') : `[${msgs.join(', ')}]`;
}

export const required = (field: string, detail = ''): FieldError => ({ type: 'Required', field, detail });
export const invalid = (field: string, value: unknown, detail: string): FieldError => ({ type: 'Invalid', field, value, detail });
export const forbidden = (field: string, detail: string): FieldError => ({ type: 'Forbidden', field, detail });
export const duplicate = (field: string, value: unknown): FieldError => ({ type: 'Duplicate', field, value, detail: '' });

/** `field.NotSupported`: detail `supported values: "a", "b"`. */
export function notSupported(field: string, value: unknown, valid: readonly string[]): FieldError {
  const detail = valid.length > 0 ? `supported values: ${valid.map(goQuote).join(', ')}` : '';
  return { type: 'NotSupported', field, value, detail };
}

/**
 * 422: `<Kind> "<name>" is invalid: <aggregate>` (apimachinery `errors.NewInvalid`).
 * Thrown by the service allocation path for validation errors and for a user-requested
 * clusterIP / nodePort that can not be allocated.
 */
export class ServiceInvalidError extends IpamError {
  readonly status = 422;
  readonly kind: string;
  readonly objectName: string;
  readonly fieldErrors: readonly FieldError[];
  constructor(objectName: string, fieldErrors: readonly FieldError[], kind = 'Service') {
    super('ERR_IPAM_INVALID', `${kind} ${goQuote(objectName)} is invalid: ${aggregateFieldErrors(fieldErrors)}`);
    this.kind = kind;
    this.objectName = objectName;
    this.fieldErrors = fieldErrors;
  }
}

/**
 * 500: `Internal error occurred: <detail>` (apimachinery `errors.NewInternalError`).
 * Upstream uses it for a failed dynamic allocation, e.g.
 * `failed to allocate a serviceIP: range is full`.
 */
export class ServiceInternalError extends IpamError {
  readonly status = 500;
  readonly detail: string;
  constructor(detail: string, cause?: unknown) {
    super('ERR_IPAM_INTERNAL', `Internal error occurred: ${detail}`, cause === undefined ? undefined : { cause });
    this.detail = detail;
  }
}
