# syntax=docker/dockerfile:1
# Build stage: the same npm scripts CI runs (npm ci, npm run build).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime: compiled JS, production dependencies, the example zones; no compilers, no npm cache.
FROM node:24-bookworm-slim
# Port 53 without root: a file capability on node (as CoreDNS's image does on its binary).
# The service proxy's tools (`clusterdns proxy`, deploy/kubernetes/node): iptables
# (iptables-restore; Debian's default backend is nf_tables), nftables (nft) and conntrack
# (stale UDP entries). Run as root with NET_ADMIN there; the DNS server never calls them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin iptables nftables conntrack \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/node)" \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY zones ./zones
COPY clusterdns.yaml ./
# The embedded registry keeps its state next to zones/ (--state); in a pod the API
# source is used and nothing is written.
RUN mkdir -p /app/.clusterdns && chown 1000:1000 /app/.clusterdns
# Numeric, so runAsNonRoot can verify it (the image's `node` user).
USER 1000:1000
EXPOSE 53/udp 53/tcp 8080/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/clusterdns.js"]
CMD ["serve", "--config", "clusterdns.yaml", "--dns", "0.0.0.0:53", "--http", "0.0.0.0:8080"]
