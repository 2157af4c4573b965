/**
 * Field checks shared by the delivery RPCs, each failing with a precise ConnectError.
 */
import { Code, ConnectError } from "@connectrpc/connect";

const ACCOUNT_ID = /^[a-z0-9][a-z0-9_-]{2,63}$/;
export const MAX_DEVICE_ID = 2 ** 31 - 1;

export function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

export function exhausted(message: string): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted);
}

export function checkAccountId(field: string, id: string): void {
  if (!ACCOUNT_ID.test(id)) {
    throw invalid(`${field} ${JSON.stringify(id.slice(0, 80))} is not an account id (3 to 64 of [a-z0-9_-], starting with a letter or digit)`);
  }
}

export function checkDeviceId(field: string, id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_DEVICE_ID) throw invalid(`${field} must be 1 to ${MAX_DEVICE_ID}, got ${id}`);
}

const hexTable = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
export function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += hexTable[b[i]];
  return s;
}
