// Preloaded into the bench's server (`--import`) when BENCH_ALLOC_PROF names a file: samples every
// allocation, including objects the collector has already freed (a plain heap profile shows only
// survivors, which hides what a call allocates and drops), and writes the profile there when the
// process exits. Open it in Chrome DevTools (Memory → Load; a `.heapprofile` name helps).
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";

const target = process.env.BENCH_ALLOC_PROF;
if (target) {
  const session = new Session();
  session.connect();
  session.post("HeapProfiler.startSampling", { samplingInterval: 1024, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  // A session on the main thread answers synchronously, so this works inside an exit handler.
  process.on("exit", () => {
    session.post("HeapProfiler.stopSampling", (err, result) => {
      if (err) process.stderr.write(`allocation profile not written: ${err.message}\n`);
      else writeFileSync(target, JSON.stringify(result.profile));
    });
  });
}
