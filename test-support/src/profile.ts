/**
 * How hard the reliability suites push: a short CI profile by default, the full one with
 * SEALPOST_PROFILE=full (`npm run soak`). Every loop in those suites is bounded by these.
 */
export interface ReliabilityProfile {
  name: "ci" | "full";
  /** Traffic per fault scenario. */
  trafficMs: number;
  /** Sends per second over all senders. */
  sendsPerSecond: number;
  senders: number;
  receivers: number;
  /** How many times each fault is injected within one scenario. */
  faultRepeats: number;
  /** After traffic: how long receivers get to drain everything acknowledged. */
  drainMs: number;
  /** fast-check runs per RPC and protocol in the fuzz suite. */
  fuzzRuns: number;
  /** Raw framing cases per protocol. */
  framingRuns: number;
  /** Requests in the flood of the rate-limit test. */
  floodRequests: number;
}

const ci: ReliabilityProfile = {
  name: "ci",
  trafficMs: 3_000,
  sendsPerSecond: 60,
  senders: 3,
  receivers: 3,
  faultRepeats: 1,
  drainMs: 45_000,
  fuzzRuns: 40,
  framingRuns: 100,
  floodRequests: 200,
};

const full: ReliabilityProfile = {
  name: "full",
  trafficMs: 20_000,
  sendsPerSecond: 200,
  senders: 6,
  receivers: 6,
  faultRepeats: 3,
  drainMs: 90_000,
  fuzzRuns: 400,
  framingRuns: 300,
  floodRequests: 2_000,
};

export function reliabilityProfile(env: NodeJS.ProcessEnv = process.env): ReliabilityProfile {
  return env.SEALPOST_PROFILE === "full" ? full : ci;
}
