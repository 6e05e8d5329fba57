/**
 * Hot-path counters are plain additions reported to prom-client when the registry is collected:
 * a scrape must show every count exactly once, however often it is scraped.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createMetrics, type Metrics } from "../src/observability/metrics.js";

let metrics: Metrics | undefined;
afterEach(() => metrics?.stop());

const sample = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}.]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);

describe("tallied counters", () => {
  it("show each count once per scrape, and keep counting between scrapes", async () => {
    metrics = createMetrics();
    for (let i = 0; i < 3; i++) metrics.decision("Check", "VALID");
    metrics.decision("Check", "RATE_LIMITED");
    metrics.keyCacheLookup("hit");
    metrics.rpc("envoy.service.auth.v3.Authorization", "Check", "OK", 0.0002);
    let text = await metrics.registry.metrics();
    expect(sample(text, 'tollgate_decisions_total{rpc="Check",code="VALID"}')).toBe(3);
    expect(sample(text, 'tollgate_decisions_total{rpc="Check",code="RATE_LIMITED"}')).toBe(1);
    expect(sample(text, 'tollgate_key_cache_total{result="hit"}')).toBe(1);
    expect(sample(text, 'tollgate_rpc_total{service="envoy.service.auth.v3.Authorization",method="Check",code="OK"}')).toBe(1);
    expect(sample(text, 'tollgate_rpc_duration_seconds_count{service="envoy.service.auth.v3.Authorization",method="Check"}')).toBe(1);

    text = await metrics.registry.metrics(); // nothing new: nothing added twice
    expect(sample(text, 'tollgate_decisions_total{rpc="Check",code="VALID"}')).toBe(3);
    metrics.decision("Check", "VALID");
    metrics.keyCacheLookup("miss");
    text = await metrics.registry.metrics();
    expect(sample(text, 'tollgate_decisions_total{rpc="Check",code="VALID"}')).toBe(4);
    expect(sample(text, 'tollgate_key_cache_total{result="hit"}')).toBe(1);
    expect(sample(text, 'tollgate_key_cache_total{result="miss"}')).toBe(1);
  });
});
