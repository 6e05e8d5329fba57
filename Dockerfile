# syntax=docker/dockerfile:1
# Build stage: install everything, compile TypeScript to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY src ./src
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# Runtime stage: compiled code and production dependencies only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    TOLLGATE_HOST=0.0.0.0 \
    TOLLGATE_GRPC_PORT=50051 \
    TOLLGATE_HTTP_PORT=8080 \
    TOLLGATE_DATA_DIR=/var/lib/tollgate
WORKDIR /app
RUN groupadd --system tollgate && useradd --system --gid tollgate --home-dir /var/lib/tollgate tollgate \
 && mkdir -p /var/lib/tollgate && chown tollgate:tollgate /var/lib/tollgate
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
USER tollgate
EXPOSE 50051 8080
VOLUME ["/var/lib/tollgate"]
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.TOLLGATE_HTTP_PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Set DATABASE_URL for a real deployment; without it the embedded PostgreSQL keeps data in the volume.
CMD ["node", "dist/src/main.js"]
