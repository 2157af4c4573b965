/** Small helpers the SDK is built on and other packages reuse. */
export { Pushable } from "./pushable.js";
export { Backoff, retry } from "./backoff.js";
export { KeyedLock } from "./keyed-lock.js";
export { mapInOrder } from "./in-order.js";
