/**
 * Bounds of the Double Ratchet state, as in libsignal (MAX_FORWARD_JUMPS = 25_000 there for
 * the whole chain; MAX_MESSAGE_KEYS = 2000 per chain; 40 archived sessions). Ours are
 * tighter; docs/PROTOCOL.md "Limits".
 */
/** A message may be at most this many positions ahead of the next expected one in its chain. */
export const MAX_FORWARD_JUMP = 2000;
/** Skipped message keys kept per session; the oldest are dropped first. */
export const MAX_SKIPPED_KEYS = 2000;
/** Superseded session states kept per remote device (simultaneous initiation, late mail). */
export const MAX_PREVIOUS_SESSIONS = 5;
/** Ratchet keys of finished receiving chains remembered to report late duplicates. */
export const MAX_OLD_RATCHET_KEYS = 5;
/** Channel sequence numbers remembered as missing (gaps) per channel. */
export const MAX_MISSING_SEQUENCES = 2000;
/** A Send entry (a serialized DeviceEnvelope, or a SealedEntry) is at most this many bytes; the server refuses larger ones. */
export const MAX_ENTRY_BYTES = 4096;
/**
 * What sealing a DeviceEnvelope into a SealedEntry adds at most (sealed-entry.ts): the sender
 * certificate (a 64-character account id, the identity key, expiry, key id, signature: 191
 * bytes), the ephemeral key, the AEAD tag and the framing: 252 bytes for envelopes of 128 to
 * 16383 bytes.
 */
export const SEALED_ENTRY_OVERHEAD = 256;
/** An entry carries its content inline only if its DeviceEnvelope leaves room to seal it (SendSealed). */
export const MAX_INLINE_ENVELOPE_BYTES = MAX_ENTRY_BYTES - SEALED_ENTRY_OVERHEAD;
