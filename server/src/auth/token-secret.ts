/**
 * The token secret every instance shares. Configured explicitly, or generated once by the
 * first instance and stored in the config bucket (create is atomic, so concurrent first
 * starts agree on one secret).
 */
import { randomBytes } from "node:crypto";
import type { KV } from "@nats-io/kv";

const KEY = "token-secret";

export async function loadTokenSecret(configBucket: KV, configured: string): Promise<Uint8Array> {
  if (configured) return new TextEncoder().encode(configured);
  const existing = await configBucket.get(KEY);
  if (existing && existing.value.length >= 32) return existing.value;
  try {
    await configBucket.create(KEY, randomBytes(32));
  } catch {
    // Another instance won the race; read its secret below.
  }
  const stored = await configBucket.get(KEY);
  if (!stored || stored.value.length < 32) throw new Error("token secret missing from the config bucket");
  return stored.value;
}
