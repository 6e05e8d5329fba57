import type { Metrics } from "../observability/metrics.js";
import type { HttpRoute } from "./http-server.js";

export interface RouteDeps {
  metrics: Metrics;
  /** True while the database answers and invalidations are flowing. */
  ready: () => boolean;
}

function json(res: Parameters<HttpRoute>[1], status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

/**
 * Plain HTTP endpoints: `/healthz` (liveness: the process serves requests), `/readyz` (readiness:
 * the database is reachable, so uncached keys can be verified), `/metrics` (Prometheus).
 */
export function createRoutes(deps: RouteDeps): Record<string, HttpRoute> {
  return {
    "/healthz": (_req, res) => json(res, 200, { status: "ok" }),
    "/readyz": (_req, res) => (deps.ready() ? json(res, 200, { status: "ready" }) : json(res, 503, { status: "not ready" })),
    "/metrics": async (_req, res) => {
      const body = await deps.metrics.registry.metrics();
      res.writeHead(200, { "content-type": deps.metrics.registry.contentType });
      res.end(body);
    },
  };
}
