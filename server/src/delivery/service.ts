/**
 * DeliveryService: Send, the per-device mailbox stream, Ack, attachments.
 * (Foundation stub: every RPC answers UNIMPLEMENTED until the delivery issue lands.)
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { DeliveryService } from "@sealpost/gen/sealpost/delivery/v1/delivery_service_pb.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { ServerContext } from "../server-context.js";
import type { Directory } from "../directory/service.js";

export interface Delivery {
  impl: Partial<ServiceImpl<typeof DeliveryService>>;
  close(): Promise<void>;
}

export async function createDelivery(_ctx: ServerContext, _auth: Authenticator, _directory: Directory): Promise<Delivery> {
  return { impl: {}, close: async () => {} };
}
