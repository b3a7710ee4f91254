/**
 * apimachinery field.Error rendering and the 422/500 status errors.
 */
import t from 'tap';
import * as ipam from '../../src/ipam/index.js';
import {
  ServiceInternalError,
  ServiceInvalidError,
  aggregateFieldErrors,
  duplicate,
  fieldErrorBody,
  forbidden,
  formatFieldError,
  invalid,
  notSupported,
  required,
} from '../../src/ipam/field.js';

t.test('ErrorBody per type (apimachinery field.Error)', async (t) => {
  t.equal(formatFieldError(required('spec.clusterIPs')), 'spec.clusterIPs: Required value');
  t.equal(formatFieldError(required('metadata.name', 'name or generateName is required')), 'metadata.name: Required value: name or generateName is required');
  t.equal(formatFieldError(forbidden('spec.ipFamilies', 'may not be set for ExternalName services')), 'spec.ipFamilies: Forbidden: may not be set for ExternalName services');
  t.equal(formatFieldError(invalid('spec.clusterIPs[0]', 'None', 'x')), 'spec.clusterIPs[0]: Invalid value: "None": x');
  t.equal(formatFieldError(invalid('spec.ports[0].nodePort', 30080, 'y')), 'spec.ports[0].nodePort: Invalid value: 30080: y');
  t.equal(formatFieldError(invalid('spec.clusterIPs', ['10.0.0.1', ''], 'z')), 'spec.clusterIPs: Invalid value: []string{"10.0.0.1", ""}: z');
  t.equal(formatFieldError(invalid('spec.ipFamilyPolicy', undefined, 'w')), 'spec.ipFamilyPolicy: Invalid value: null: w');
  t.equal(formatFieldError(duplicate('spec.ipFamilies[1]', 'IPv4')), 'spec.ipFamilies[1]: Duplicate value: "IPv4"');
  t.equal(formatFieldError(notSupported('p', 'x', ['a', 'b'])), 'p: Unsupported value: "x": supported values: "a", "b"');
  t.equal(fieldErrorBody(notSupported('p', 'x', [])), 'Unsupported value: "x"');
  t.equal(fieldErrorBody({ type: 'Internal', field: 'f', detail: 'boom' }), 'Internal error: boom');
  t.equal(fieldErrorBody(invalid('f', { a: 1 }, 'obj')), 'Invalid value: {"a":1}: obj');
});

t.test('aggregate and status errors', async (t) => {
  const a = required('a');
  const b = invalid('b', 'x', 'bad');
  t.equal(aggregateFieldErrors([a]), 'a: Required value');
  t.equal(aggregateFieldErrors([a, b, a]), '[a: Required value, b: Invalid value: "x": bad]', 'ToAggregate deduplicates');
  const inv = new ServiceInvalidError('foo', [a, b]);
  t.equal(inv.message, 'Service "foo" is invalid: [a: Required value, b: Invalid value: "x": bad]');
  t.same([inv.status, inv.code, inv.kind, inv.objectName, inv.name], [422, 'ERR_IPAM_INVALID', 'Service', 'foo', 'ServiceInvalidError']);
  t.ok(inv instanceof ipam.IpamError);
  t.equal(new ServiceInvalidError('ep', [a], 'Endpoints').message, 'Endpoints "ep" is invalid: a: Required value');
  const internal = new ServiceInternalError('failed to allocate a serviceIP: range is full', new ipam.ErrFull());
  t.same([internal.status, internal.code, internal.message], [500, 'ERR_IPAM_INTERNAL', 'Internal error occurred: failed to allocate a serviceIP: range is full']);
  t.ok(internal.cause instanceof ipam.ErrFull);
});

t.test('the barrel exports the public API', async (t) => {
  for (const name of [
    'ClusterIPAllocator', 'validateServiceCidrs', 'Range', 'AllocationBitmap', 'PortAllocator', 'ClusterIPRepair',
    'planServiceIPs', 'validateEndpointIP', 'validateEndpoints', 'IP', 'Cidr', 'parseCidr',
    'ErrFull', 'ErrAllocated', 'ErrNotInRange', 'ErrMismatchedNetwork',
  ]) {
    t.type((ipam as Record<string, unknown>)[name], 'function', name);
  }
});
