/**
 * Send's device-list check for the common Send, without a promise or a collection: do the
 * lists in memory say that the Send addresses exactly every listed device of every account
 * involved (the sender's own account always, its other devices get a copy), and is the
 * sender listed? "Not known to agree" (a list not in memory, any difference, devices without
 * prekeys that may be left out) is false: Sender.checkDeviceLists then decides, reading what
 * it lacks, and reports every difference precisely.
 */
import type { CurrentDeviceList } from "./device-lists.js";
import type { DeviceRef } from "./mailbox.js";

/**
 * `sender` is the sending device, or for a sealed Send the one account addressed (no device
 * of it is the sender). `targets` hold no repeated device and not the sender (Send's
 * validation refuses both). Pairwise: meant for a few dozen entries at most.
 */
export function listsAgree(
  sender: DeviceRef | string,
  targets: readonly { device: DeviceRef }[],
  listOf: (accountId: string) => CurrentDeviceList | undefined,
  senderMustBeListed: boolean,
): boolean {
  const own = typeof sender === "string" ? sender : sender.accountId;
  const ownList = listOf(own);
  if (!ownList) return false;
  const senderListed = typeof sender !== "string" && ownList.deviceIds.includes(sender.deviceId);
  if (senderMustBeListed && !senderListed) return false;
  let ownAddressed = 0;
  for (let i = 0; i < targets.length; i++) {
    const account = targets[i].device.accountId;
    let seenBefore = false;
    for (let j = 0; j < i && !seenBefore; j++) seenBefore = targets[j].device.accountId === account;
    if (seenBefore) continue;
    const list = account === own ? ownList : listOf(account);
    if (!list) return false;
    let addressed = 0;
    for (let j = i; j < targets.length; j++) {
      if (targets[j].device.accountId !== account) continue;
      if (!list.deviceIds.includes(targets[j].device.deviceId)) return false;
      addressed++;
    }
    if (account === own) ownAddressed = addressed;
    else if (addressed !== list.deviceIds.length) return false;
  }
  return ownAddressed === ownList.deviceIds.length - (senderListed ? 1 : 0);
}
