/**
 * In a Chromium page (web-bench.ts): the same session_setup and steady_1to1 workloads as on
 * Node, with the provider the SDK uses in browsers (@noble). window.measure(figure, ms) runs one
 * timed sample and returns ops/s; window.warm(figure, ms) runs an untimed one.
 */
import { createNobleProvider } from "@sealpost/client/web";
import { coreSetups, timedOps, type Runner } from "../sealpost-workload.js";

type FigureName = "session_setup" | "steady_1to1";
const setups = coreSetups(createNobleProvider());
const runners = new Map<FigureName, Runner>();

async function runner(name: FigureName): Promise<Runner> {
  let r = runners.get(name);
  if (!r) runners.set(name, (r = await setups[name]()));
  return r;
}

const g = globalThis as Record<string, unknown>;
g.measure = async (name: FigureName, ms: number) => timedOps(await runner(name), ms);
g.ready = true;
