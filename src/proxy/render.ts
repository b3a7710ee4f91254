/**
 * `clusterdns rules`: the full ruleset for the current view, rendered and printed,
 * nothing applied. The same renderers the backends apply, so what is printed is what a
 * first sync would write.
 */
import type { StoreProvider } from '../cluster/provider.js';
import { renderIptables } from './iptables.js';
import { renderNftables } from './nftables.js';
import { resolveNodeName, rulesOptions } from './service.js';
import type { ProxySettings } from './types.js';
import { mergedPorts, ProxyView } from './view.js';

export function renderRules(
  mode: 'iptables' | 'nftables',
  provider: StoreProvider,
  config: ProxySettings,
  opts: { readonly nodeName?: string | undefined; readonly serviceCIDRsKnown: boolean },
): string {
  const nodeName = resolveNodeName(opts.nodeName, config);
  // One view per zone, read for both families.
  const views = provider.zones().map((zone) => new ProxyView(provider.storeFor(zone), nodeName));
  const parts: string[] = [];
  for (const family of [4, 6] as const) {
    const ports = mergedPorts(views, family);
    const ro = rulesOptions(config, family, opts.serviceCIDRsKnown);
    if (mode === 'iptables') {
      const text = renderIptables(ports, ro, { full: true, changed: new Set(), previousChains: new Set() }).text;
      parts.push(family === 4 ? `# iptables-restore --noflush input\n${text}` : `# ip6tables-restore --noflush input\n${text}`);
    } else {
      parts.push(renderNftables(ports, ro, { full: true, changed: new Set() }).text);
    }
  }
  return parts.join(parts[0]!.endsWith('\n') ? '' : '\n');
}
