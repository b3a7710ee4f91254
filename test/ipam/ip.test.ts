import t from 'tap';
import { InvalidCidrError, InvalidIPError } from '../../src/ipam/errors.js';
import { Cidr, IP, MAX_INT64, isIPv6String, parseCidr, rangeSize } from '../../src/ipam/ip.js';
import { throwsClass } from './fixtures/helpers.js';

t.test('parse and canonical text', async (t) => {
  const cases: Array<[string, string | undefined, ('IPv4' | 'IPv6')?]> = [
    ['10.0.0.1', '10.0.0.1', 'IPv4'],
    ['0.0.0.0', '0.0.0.0', 'IPv4'],
    ['255.255.255.255', '255.255.255.255', 'IPv4'],
    ['010.000.000.001', '10.0.0.1', 'IPv4'], // ParseIPSloppy: leading zeros are decimal
    ['256.0.0.1', undefined],
    ['1.2.3', undefined],
    ['1.2.3.4.5', undefined],
    ['1.2.3.', undefined],
    [' 1.2.3.4', undefined],
    ['', undefined],
    ['a.b.c.d', undefined],
    ['::', '::', 'IPv6'],
    ['::1', '::1', 'IPv6'],
    ['1::', '1::', 'IPv6'],
    ['2001:DB8::1', '2001:db8::1', 'IPv6'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1', 'IPv6'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 'IPv6'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 'IPv6'], // single zero group not compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1', 'IPv6'], // longest run wins
    ['fe80::1:2:3:4', 'fe80::1:2:3:4', 'IPv6'],
    ['::ffff:10.0.0.1', '10.0.0.1', 'IPv4'], // IPv4-mapped is IPv4 (Go To4)
    ['::ffff:a00:1', '10.0.0.1', 'IPv4'],
    ['::ffff:127.0.0.1', '127.0.0.1', 'IPv4'],
    ['::10.0.0.1', '::a00:1', 'IPv6'], // IPv4-compatible is IPv6
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', 'IPv6'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304', 'IPv6'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', 'IPv6'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', 'IPv6'],
    ['1:2:3:4:5:6:7:8::', undefined], // :: must stand for at least one group
    ['1:2:3:4:5:6:7', undefined],
    ['1::2::3', undefined],
    [':1::', undefined],
    ['1:::2', undefined],
    ['12345::', undefined],
    ['fe80::1%eth0', undefined],
    ['1.2.3.4::', undefined],
    ['::1.2.3.4:1', undefined],
    ['[::1]', undefined],
    ['2001:0db8:85a3:0042:1000:8a2e:0370:7334', '2001:db8:85a3:42:1000:8a2e:370:7334', 'IPv6'],
    ['[2001:0db8:85a3:0042:1000:8a2e:0370:7334]', undefined],
  ];
  for (const [input, want, fam] of cases) {
    t.equal(IP.parse(input)?.toString(), want, `canonical ${JSON.stringify(input)}`);
    t.equal(IP.parse(input)?.family, fam, `family ${JSON.stringify(input)}`);
  }
  t.equal(isIPv6String('::ffff:1.2.3.4'), false);
  t.equal(isIPv6String('2000::1'), true);
  t.equal(isIPv6String('bogus'), false);
  throwsClass(t, () => IP.mustParse('bogus'), InvalidIPError, 'invalid IP address: "bogus"');
});

t.test('IP arithmetic and equality', async (t) => {
  const a = IP.mustParse('192.168.0.255');
  t.equal(a.add(1n)?.toString(), '192.168.1.0');
  t.equal(IP.mustParse('255.255.255.255').add(1n), undefined);
  t.equal(IP.mustParse('0.0.0.0').add(-1n), undefined);
  t.equal(IP.mustParse('fd00:1:2:3::a').add(1n)?.toString(), 'fd00:1:2:3::b');
  t.equal(IP.mustParse('fc::1').add(255n)?.toString(), 'fc::100');
  t.ok(IP.mustParse('10.0.0.1').equals(IP.mustParse('::ffff:10.0.0.1')));
  t.notOk(IP.mustParse('::1').equals(IP.mustParse('0.0.0.1')));
  t.equal(JSON.stringify({ ip: IP.mustParse('2001:db8::1') }), '{"ip":"2001:db8::1"}');
  t.throws(() => IP.from('IPv4', 1n << 32n), RangeError);
});

t.test('CIDR parsing', async (t) => {
  const ok: Array<[string, string, number]> = [
    ['10.0.0.0/24', '10.0.0.0/24', 24],
    ['192.168.1.1/24', '192.168.1.0/24', 24], // host bits masked, like ParseCIDR
    ['192.168.1.1/32', '192.168.1.1/32', 32],
    ['0.0.0.0/0', '0.0.0.0/0', 0],
    ['2001:db8:1::/48', '2001:db8:1::/48', 48],
    ['fd00::1/126', 'fd00::/126', 126],
    ['fd00::1/12', 'fd00::/12', 12],
    ['::ffff:10.0.0.0/120', '10.0.0.0/24', 24], // Go prints a mapped /120 as v4 /24
  ];
  for (const [input, want, prefix] of ok) {
    const c = parseCidr(input);
    t.equal(c.toString(), want, input);
    t.equal(c.prefix, prefix, `${input} prefix`);
  }
  const bad: Array<[string, string]> = [
    ['10.0.0.0', 'invalid CIDR address: 10.0.0.0: missing "/<prefix length>"'],
    ['10.0.0.0/33', 'invalid CIDR address: 10.0.0.0/33: prefix length must be 0-32 for IPv4'],
    ['fd00::/129', 'invalid CIDR address: fd00::/129: prefix length must be 0-128 for IPv6'],
    ['10.0.0/8', 'invalid CIDR address: 10.0.0/8: "10.0.0" is not an IP address'],
    ['10.0.0.0/', 'invalid CIDR address: 10.0.0.0/: "" is not a prefix length'],
    ['10.0.0.0/-1', 'invalid CIDR address: 10.0.0.0/-1: "-1" is not a prefix length'],
    ['10.0.0.0/8/8', 'invalid CIDR address: 10.0.0.0/8/8: "8/8" is not a prefix length'],
    ['::ffff:10.0.0.0/64', 'invalid CIDR address: ::ffff:10.0.0.0/64: IPv4-mapped IPv6 prefix must be /96 or longer'],
  ];
  for (const [input, msg] of bad) {
    const err = throwsClass(t, () => parseCidr(input), InvalidCidrError, msg, input);
    t.equal(err?.code, 'ERR_IPAM_INVALID_CIDR');
  }
});

t.test('contains, last address and range size', async (t) => {
  const c = parseCidr('10.0.0.0/24');
  t.ok(c.contains(IP.mustParse('10.0.0.0')));
  t.ok(c.contains(IP.mustParse('10.0.0.255')));
  t.notOk(c.contains(IP.mustParse('10.0.1.0')));
  t.ok(c.contains(IP.mustParse('::ffff:a00:1')), 'mapped v4 is contained');
  t.notOk(parseCidr('::/0').contains(IP.mustParse('10.0.0.1')), 'v4 not in a v6 range');
  // D3 broadcastAddress (last address)
  const last: Array<[string, string]> = [
    ['192.168.0.0/24', '192.168.0.255'],
    ['10.0.0.0/12', '10.15.255.255'],
    ['fd00:1:2:3::/64', 'fd00:1:2:3:ffff:ffff:ffff:ffff'],
    ['fc::/112', 'fc::ffff'],
    ['fc00::/112', 'fc00::ffff'],
  ];
  for (const [cidr, want] of last) t.equal(parseCidr(cidr).last.toString(), want, `last ${cidr}`);
  // RangeSize: exact below 63 host bits, MaxInt64 from there on.
  const sizes: Array<[string, bigint]> = [
    ['10.0.0.0/32', 1n],
    ['10.0.0.0/24', 256n],
    ['0.0.0.0/0', 1n << 32n],
    ['fd00::/112', 65536n],
    ['fd00::/66', 1n << 62n],
    ['fd00::/65', MAX_INT64],
    ['fd00::/64', MAX_INT64],
    ['fd00::/12', MAX_INT64],
  ];
  for (const [cidr, want] of sizes) t.equal(rangeSize(parseCidr(cidr)), want, `RangeSize ${cidr}`);
  t.ok(Cidr.parse('10.0.0.5/24').equals(Cidr.parse('10.0.0.0/24')));
  t.notOk(Cidr.parse('10.0.0.0/24').equals(Cidr.parse('10.0.0.0/25')));
});
