import { createNodeProvider } from "@sealpost/client/crypto";
import { sealpostPair, sealpostRoundTrip } from "./sealpost-workload.js";
const p = createNodeProvider();
const [a, b] = await sealpostPair(p);
await a.cipher.processBundle(b.address, await b.bundle());
await sealpostRoundTrip(a, b);
await sealpostRoundTrip(b, a);
const t = performance.now();
let n = 0;
while (performance.now() - t < 6000) { await sealpostRoundTrip(a, b); n++; }
console.log("ops/s", Math.round(n / 6));
