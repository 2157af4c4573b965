/**
 * The runner's side of the harness protocol: a client under test as a child process
 * (any language), or the TypeScript client in-process (the reference peer in session
 * scenarios). Requests carry ids; a response must answer the oldest outstanding one.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  HarnessRequestSchema,
  HarnessResponseSchema,
  type HarnessRequest,
  type HarnessResponse,
} from "@sealpost/gen/sealpost/conformance/v1/client_harness_pb.js";
import { encodeFrame, readFrames } from "./framing.js";
import { TsHarness } from "../client-under-test/ts-client.js";

export type RequestKind = HarnessRequest["kind"];

export interface Harness {
  call(kind: RequestKind): Promise<HarnessResponse>;
  close(): Promise<void>;
}

export class InProcessHarness implements Harness {
  readonly #h = new TsHarness();
  #id = 0n;
  call(kind: RequestKind): Promise<HarnessResponse> {
    return this.#h.handle(create(HarnessRequestSchema, { id: ++this.#id, kind }));
  }
  async close(): Promise<void> {}
}

export class ProcessHarness implements Harness {
  readonly #child: ChildProcess;
  readonly #pending: { id: bigint; resolve: (r: HarnessResponse) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  #id = 0n;
  #stderr = "";
  #dead: Error | undefined;

  constructor(
    command: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.#child = spawn(command, { shell: true, stdio: ["pipe", "pipe", "pipe"] });
    this.#child.stderr!.on("data", (d: Buffer) => (this.#stderr = (this.#stderr + d.toString("utf8")).slice(-4000)));
    this.#child.on("exit", (code, signal) =>
      this.#fail(new Error(`client under test exited (${signal ?? code})${this.#stderr ? `; stderr: ${this.#stderr.trim()}` : ""}`)),
    );
    const stdout = this.#child.stdout!;
    this.#child.on("error", (err) => this.#fail(err));
    this.#child.stdin!.on("error", () => {});
    void (async () => {
      try {
        for await (const frame of readFrames(stdout)) {
          const p = this.#pending.shift();
          if (!p) throw new Error("client under test sent a response nobody asked for");
          clearTimeout(p.timer);
          let res: HarnessResponse;
          try {
            res = fromBinary(HarnessResponseSchema, frame);
          } catch (err) {
            p.reject(new Error(`unparsable HarnessResponse: ${(err as Error).message}`));
            continue;
          }
          if (res.id !== p.id) p.reject(new Error(`response id ${res.id} answers request ${p.id}: responses must come in order`));
          else p.resolve(res);
        }
      } catch (err) {
        this.#fail(err as Error);
      }
    })();
  }

  #fail(err: Error): void {
    this.#dead ??= err;
    for (const p of this.#pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  call(kind: RequestKind): Promise<HarnessResponse> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(new Error(`no response to request ${id} (${kind.case}) within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.#pending.push({ id, resolve, reject, timer });
      this.#child.stdin!.write(encodeFrame(toBinary(HarnessRequestSchema, create(HarnessRequestSchema, { id, kind }))));
    });
  }

  async close(): Promise<void> {
    this.#child.stdin!.end();
    await new Promise<void>((resolve) => {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) return resolve();
      const t = setTimeout(() => {
        this.#child.kill("SIGKILL");
        resolve();
      }, 3000);
      this.#child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
