/**
 * Opening sealed mail (MailboxMessage.sealed): the entry is a SealedEntry this device opens
 * with its X25519 identity key; inside are the sender's certificate, verified here against
 * the server's certificate keys (fetched once, again when a certificate names a key not seen
 * yet), and the device envelope, which the pipeline then decrypts with the session of the
 * device the certificate names. The pipeline also checks that the certificate's identity key
 * is the one that device has in its account's verified device list.
 */
import type { CertificateKey } from "@sealpost/gen/sealpost/directory/v1/sender_certificate_pb.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { SenderCertificateError, verifySenderCertificate, type VerifiedSenderCertificate } from "../directory/sender-certificate.js";
import { openSealedEntry } from "../protocol/sealed-entry.js";
import type { LocalIdentity } from "../protocol/identity.js";

/** Ask the server for its certificate keys again at most this often (an unknown key id is otherwise forged). */
const KEYS_REFRESH_MS = 60_000;

export interface SealedReceivingDeps {
  provider: CryptoProvider;
  identity(): Promise<LocalIdentity | undefined>;
  certificateKeys(): Promise<CertificateKey[]>;
  now(): number;
}

export interface OpenedSealedMail {
  certificate: VerifiedSenderCertificate;
  deviceEnvelope: Uint8Array;
}

export class SealedReceiving {
  private keys?: { keys: CertificateKey[]; fetchedAtMs: number };
  /** This device's X25519 identity key pair: read from the store once, not for every sealed message. */
  private identity?: { dhPrivateKey: Uint8Array; dhPublicKey: Uint8Array };

  constructor(private readonly d: SealedReceivingDeps) {}

  /** Opens and verifies; throws InvalidMessageError / SenderCertificateError (the mail is dropped) or a transient error. */
  async open(entry: Uint8Array): Promise<OpenedSealedMail> {
    const { certificate, deviceEnvelope } = await openSealedEntry(this.d.provider, await this.identityKeys(), entry);
    const now = this.d.now();
    try {
      return { certificate: await verifySenderCertificate(this.d.provider, certificate, await this.certificateKeys(false), now), deviceEnvelope };
    } catch (err) {
      if (!(err instanceof SenderCertificateError && err.problem === "unknown-key")) throw err;
      // A rotation since the keys were fetched?
      return { certificate: await verifySenderCertificate(this.d.provider, certificate, await this.certificateKeys(true), now), deviceEnvelope };
    }
  }

  private async identityKeys(): Promise<{ dhPrivateKey: Uint8Array; dhPublicKey: Uint8Array }> {
    if (!this.identity) {
      const id = await this.d.identity();
      if (!id) throw new Error("no local identity");
      this.identity = { dhPrivateKey: id.dhPrivateKey, dhPublicKey: id.dhKey };
    }
    return this.identity;
  }

  private async certificateKeys(again: boolean): Promise<CertificateKey[]> {
    const now = this.d.now();
    if (this.keys && !(again && now - this.keys.fetchedAtMs >= KEYS_REFRESH_MS)) return this.keys.keys;
    this.keys = { keys: await this.d.certificateKeys(), fetchedAtMs: now };
    return this.keys.keys;
  }
}
