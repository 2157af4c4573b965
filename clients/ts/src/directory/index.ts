/**
 * Device lists: signed changes (first list, link, revoke), chain verification, the signed
 * byte layouts (device list, auth), link codes.
 */
export {
  createFirstDeviceList,
  generateDeviceKeys,
  linkDeviceChange,
  parseDeviceList,
  revokeDeviceChange,
  signDeviceList,
  type DeviceSigner,
  type GeneratedDeviceKeys,
} from "./device-list-changes.js";
export {
  verifyDeviceListChain,
  verifyFirstVersion,
  verifySuccessor,
  DeviceListVerificationError,
  type VerifiedDeviceList,
  type DeviceListProblem,
} from "./device-list-chain.js";
export { authSignedBytes, deviceListSignedBytes, AUTH_LABEL, DEVICE_LIST_LABEL } from "./labels.js";
export { makeLinkCode, readLinkCode, LINK_CODE_TTL_MS } from "./link-code.js";
export {
  verifySenderCertificate,
  senderCertificateSignedBytes,
  SenderCertificateError,
  type SenderCertificateProblem,
  type VerifiedSenderCertificate,
} from "./sender-certificate.js";
export { accountIndex, KeyTransparency, TransparencyError } from "./key-transparency.js";
export { transparencyLeaf, treeHeadSignedBytes } from "./labels.js";
export { leafHash, verifyConsistency, verifyInclusion } from "./merkle-proofs.js";
export { auditLog, type AuditReport } from "./log-audit.js";
