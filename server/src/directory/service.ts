/**
 * DirectoryService: accounts, signed device lists, authentication, prekeys.
 * (Foundation stub: every RPC answers UNIMPLEMENTED until the directory issue lands.)
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { DirectoryService } from "@sealpost/gen/sealpost/directory/v1/directory_service_pb.js";
import type { DeviceStatus } from "../auth/authenticator.js";
import type { ServerContext } from "../server-context.js";

export interface Directory {
  impl: Partial<ServiceImpl<typeof DirectoryService>>;
  /** Whether a device is in its account's current list (used to check every token). */
  deviceStatus: DeviceStatus;
  close(): Promise<void>;
}

export async function createDirectory(_ctx: ServerContext): Promise<Directory> {
  return {
    impl: {},
    deviceStatus: { isActive: async () => false },
    close: async () => {},
  };
}
