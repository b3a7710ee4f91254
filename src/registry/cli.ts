/**
 * `clusterdns ipam [--zones DIR] [--state DIR] [--config FILE] [--json]`: loads the
 * zones through the same file source and registry code as `serve`, without serving,
 * and prints per zone the usage of every service CIDR (allocated / free / total, static
 * and dynamic band), the NodePort range, the allocations, and every anomaly: refused
 * Services with their reasons (conflicts name the holder), Services waiting for an
 * allocation, refused endpoint addresses, replaced EndpointSlices, state-file problems
 * and repair findings; then the manifest problems of the file source. Exit 0.
 *
 * Read-only: nothing is written, renamed or allocated at random (the running server
 * owns the state). A Service the server has not allocated yet shows as
 * `pending-service`; a corrupt state file is reported, not moved.
 *
 * `--json` prints one JSON document (see {@link IpamReport}).
 *
 * @module
 */
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FileSource, type Diagnostic } from '../cluster/files.js';
import { findConfigFile, loadConfigFile } from '../config.js';
import { type Anomaly, formatAnomaly } from './anomalies.js';
import { Registry } from './registry.js';
import type { RepairOutcome } from './repair.js';
import { formatBand } from './usage.js';
import type { AllocationView, ZoneStatus } from './zone.js';

export const IPAM_USAGE = `usage: clusterdns ipam [--zones DIR] [--state DIR] [--config FILE] [--json]

  Load the zones as \`serve\` does (read-only: nothing is allocated or written) and print
  the usage of every service CIDR and NodePort range and every anomaly.

  --zones DIR    embedded cluster (default ./zones)
  --state DIR    registry state (default: .clusterdns/ next to the zones folder)
  --config FILE  YAML configuration (serviceCIDRs, nodePortRange): the one serve uses
                 (default ./clusterdns.yaml when it exists)
  --json         one JSON document for machines`;

/** One zone in the report. */
export interface IpamZoneReport {
  readonly status: ZoneStatus;
  readonly allocations: readonly AllocationView[];
  readonly anomalies: readonly Anomaly[];
  readonly lastRepair?: Pick<RepairOutcome, 'at' | 'changed' | 'anomalies'>;
}

/** The `--json` document. */
export interface IpamReport {
  readonly zonesDir: string;
  readonly stateDir: string;
  readonly readOnly: true;
  readonly serviceCIDRs: readonly string[];
  readonly nodePortRange: string;
  /** The configuration file read: `--config`, or ./clusterdns.yaml found in the current folder; absent: defaults. */
  readonly configFile?: string;
  readonly zones: readonly IpamZoneReport[];
  /** Problems of the manifests themselves (YAML errors, invalid objects). */
  readonly diagnostics: readonly Diagnostic[];
  /** Total anomalies over every zone. */
  readonly anomalyCount: number;
}

/** Options of {@link collectIpamReport}. */
export interface IpamOptions {
  readonly zonesDir: string;
  readonly stateDir?: string;
  readonly configFile?: string;
}

/** Loads the zones read-only and builds the report. Throws ConfigError for a bad --config. */
export async function collectIpamReport(opts: IpamOptions): Promise<IpamReport> {
  const zonesDir = resolve(opts.zonesDir);
  const stateDir = resolve(opts.stateDir ?? join(dirname(zonesDir), '.clusterdns'));
  const config = opts.configFile === undefined ? undefined : loadConfigFile(opts.configFile);
  const configFile = opts.configFile === undefined ? undefined : resolve(opts.configFile);
  const registry = new Registry({
    stateDir,
    readOnly: true,
    ...(config === undefined ? {} : { config: { serviceCIDRs: config.serviceCIDRs, nodePortRange: config.nodePortRange } }),
  });
  const files = new FileSource({ dir: zonesDir, transform: registry.transform, watch: false });
  await files.start();
  await files.stop();
  const present = new Set(files.zones());
  const zones = registry
    .zones()
    .filter((z) => present.has(z.zone))
    .map((z): IpamZoneReport => {
      const last = z.lastRepair();
      return {
        status: z.status(),
        allocations: z.allocations(),
        anomalies: z.anomalies(),
        ...(last === undefined ? {} : { lastRepair: { at: last.at, changed: last.changed, anomalies: last.anomalies } }),
      };
    });
  return {
    zonesDir,
    stateDir,
    readOnly: true,
    serviceCIDRs: registry.settings.serviceCIDRs,
    nodePortRange: registry.settings.nodePortRange,
    ...(configFile === undefined ? {} : { configFile }),
    zones,
    diagnostics: files.diagnostics(),
    anomalyCount: zones.reduce((n, z) => n + z.anomalies.length, 0),
  };
}

/** Text rendering of a report (what `clusterdns ipam` prints without `--json`). */
export function formatIpamReport(r: IpamReport): string {
  const lines: string[] = [];
  lines.push(`configuration: ${r.configFile ?? 'defaults (no --config, no ./clusterdns.yaml)'}`);
  lines.push(`clusterdns ipam: zones ${r.zonesDir}, state ${r.stateDir} (read-only)`);
  lines.push(`service CIDRs ${r.serviceCIDRs.join(', ')}; NodePort range ${r.nodePortRange}`);
  if (r.zones.length === 0) lines.push('no zones');
  for (const z of r.zones) {
    const s = z.status;
    lines.push('');
    lines.push(`zone ${s.zone} (state ${s.stateFile}, generation ${s.persistence.generation})`);
    for (const u of s.ranges) {
      lines.push(`  ${u.family} ${u.cidr}: ${u.allocated} allocated, ${u.free} free, ${u.total} total`);
      lines.push(`    static band  ${formatBand(u.static)} allocated`);
      lines.push(`    dynamic band ${formatBand(u.dynamic)} allocated`);
    }
    const p = s.nodePorts;
    lines.push(`  NodePorts ${p.range}: ${p.allocated} allocated, ${p.free} free, ${p.total} total`);
    lines.push(`    static band  ${formatBand(p.static)} allocated`);
    lines.push(`    dynamic band ${formatBand(p.dynamic)} allocated`);
    const c = s.services;
    lines.push(
      `  services: ${c.total} served (${c.withClusterIPs} with cluster IPs, ${c.headless} headless, ${c.externalName} ExternalName), ${c.refused} refused, ${c.pending} pending`,
    );
    if (z.allocations.length > 0) {
      lines.push('  allocations:');
      const width = Math.max(...z.allocations.map((a) => a.namespace.length + a.name.length + 1));
      for (const a of z.allocations) {
        const ips = a.clusterIPs.length === 0 ? '-' : a.clusterIPs[0] === 'None' ? 'None (headless)' : a.clusterIPs.join(', ');
        const np = a.nodePorts.length === 0 ? '' : `  nodePorts ${a.nodePorts.join(', ')}`;
        const flag = a.served ? '' : '  (not served: refused update, addresses reserved)';
        lines.push(`    ${`${a.namespace}/${a.name}`.padEnd(width)}  ${a.type.padEnd(12)} ${ips}${np}${flag}`);
      }
    }
    if (z.anomalies.length === 0) {
      lines.push('  no anomalies');
    } else {
      lines.push(`  anomalies (${z.anomalies.length}):`);
      for (const a of z.anomalies) lines.push(`    ${a.severity.padEnd(7)} ${formatAnomaly(a)}`);
    }
  }
  if (r.diagnostics.length > 0) {
    lines.push('');
    lines.push(`manifest problems (${r.diagnostics.length}):`);
    for (const d of r.diagnostics) {
      const obj = d.name === undefined ? '' : ` ${d.kind ?? ''} ${d.namespace === undefined ? d.name : `${d.namespace}/${d.name}`}`;
      lines.push(`  ${d.severity.padEnd(7)} ${d.file}${d.doc === undefined ? '' : `#${d.doc}`}${obj}: ${d.message}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The `ipam` command. Returns the exit code (0; 2 for `--help` misuse is handled by
 * the caller's parse-error path). Usage and config errors are thrown to `main()`.
 */
export async function runIpam(argv: readonly string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      zones: { type: 'string' },
      state: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) {
    out.write(`${IPAM_USAGE}\n`);
    return 0;
  }
  // Without --config, ./clusterdns.yaml as `serve` reads it: the two agree on the CIDRs.
  const { path: configFile } = findConfigFile(values.config);
  const report = await collectIpamReport({
    zonesDir: values.zones ?? './zones',
    ...(values.state === undefined ? {} : { stateDir: values.state }),
    ...(configFile === undefined ? {} : { configFile }),
  });
  out.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatIpamReport(report));
  return 0;
}
