/**
 * Directory limits. The defaults match the schema comments (directory_service.proto and
 * delivery/v1/limits.proto ServerLimits): 10 devices per account, 100 one-time prekeys per
 * upload, 1000 stored per device, 16 KiB per serialized device list.
 */
export interface DirectoryLimits {
  maxDevicesPerAccount: number;
  maxPrekeysPerUpload: number;
  maxStoredOneTimePrekeys: number;
  maxDeviceListBytes: number;
  maxDeviceNameBytes: number;
  maxWatchedAccounts: number;
  /** History versions one GetDeviceList returns at most (keeps responses under the write limit). */
  maxHistoryVersions: number;
  /** Token buckets per device and per server instance: burst size and refill per minute. */
  claimsPerMinute: number;
  uploadsPerMinute: number;
  /**
   * GetAuthChallenge per caller address (IPv4 address or IPv6 /64) and instance, not per
   * target device, so nobody can use up another device's challenges. Generous: many devices
   * can share one address (NAT).
   */
  challengesPerMinute: number;
  /**
   * CreateAccount per caller address per hour, shared by every instance (nats/window-limit.ts):
   * nobody mints accounts by the hundred to claim prekeys or spam from.
   */
  accountsPerAddressPerHour: number;
  /**
   * One-time prekeys handed out per target device per minute, shared by every instance. Past
   * it, bundles come without a one-time prekey (sessions still start), so strangers cannot
   * drain a device's supply.
   */
  oneTimePrekeysPerDevicePerMinute: number;
  /**
   * GetTreeHead, GetConsistencyProof and GetLogEntries per caller address and instance: they
   * need no account and GetLogEntries answers up to 1,000 leaves (~72 KB) to a small request.
   * An auditor reading a 1M-leaf log makes ~1,000 calls.
   */
  transparencyReadsPerMinute: number;
}

export const defaultDirectoryLimits: DirectoryLimits = {
  maxDevicesPerAccount: 10,
  maxPrekeysPerUpload: 100,
  maxStoredOneTimePrekeys: 1000,
  maxDeviceListBytes: 16 * 1024,
  maxDeviceNameBytes: 64,
  maxWatchedAccounts: 256,
  maxHistoryVersions: 1000,
  claimsPerMinute: 300,
  uploadsPerMinute: 30,
  challengesPerMinute: 600,
  accountsPerAddressPerHour: 30,
  oneTimePrekeysPerDevicePerMinute: 30,
  transparencyReadsPerMinute: 600,
};

/** Account ids are NATS subject tokens in KV keys and token fields: no dots, no wildcards. */
export const ACCOUNT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{2,63}$/;
export const MAX_DEVICE_ID = 0x7fffffff;

export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const MLKEM768_PUBLIC_KEY_BYTES = 1184;
export const NONCE_BYTES = 32;
/** Shorter than the challenges bucket's 5 minutes, so a nonce's used-marker outlives it (auth/challenge.ts). */
export const CHALLENGE_TTL_MS = 4 * 60 * 1000;
