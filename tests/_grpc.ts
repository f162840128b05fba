/**
 * Test helper: the gRPC service the HTTP/2 tests call (`t.Test`, messages are raw
 * bytes, no protobuf) and a @grpc/grpc-js server implementing it on 127.0.0.1.
 *
 * Methods: `Unary` answers `hello REQUEST` (`NAME: hello REQUEST` for a named
 * server), `Fail` fails with NOT_FOUND and {@linkcode FAIL_DETAILS}, `Many`
 * streams `message 0` … `message 4999`, `Sum` adds the numbers sent, `Echo` sends
 * each message back, `Hang` never answers (see {@linkcode GrpcServer.hangStarted}),
 * `Late` answers `late` after the number of ms its request gives, `Trickle` streams
 * `first` and then nothing until cancelled.
 * It also serves the standard `grpc.health.v1.Health/Check` (two bytes of protobuf:
 * `08 01` SERVING, `08 02` NOT_SERVING), switchable per service with
 * {@linkcode GrpcServer.setHealth}; an unknown service gets NOT_FOUND.
 *
 * @module
 */
import * as grpc from "npm:@grpc/grpc-js@1.14.3";
import { Buffer } from "node:buffer";

const same = (b: Buffer) => b;
function method(path: string, stream: { request: boolean; response: boolean }) {
  return {
    path,
    requestStream: stream.request,
    responseStream: stream.response,
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  };
}
const UNARY = { request: false, response: false };

/** The service definition, for `grpc.makeGenericClientConstructor` and servers. */
export const SERVICE = {
  Unary: method("/t.Test/Unary", UNARY),
  Fail: method("/t.Test/Fail", UNARY),
  Many: method("/t.Test/Many", { request: false, response: true }),
  Sum: method("/t.Test/Sum", { request: true, response: false }),
  Echo: method("/t.Test/Echo", { request: true, response: true }),
  Hang: method("/t.Test/Hang", UNARY),
  Late: method("/t.Test/Late", UNARY),
  Trickle: method("/t.Test/Trickle", { request: false, response: true }),
};

/** The health service: `Check` takes and answers raw protobuf bytes. */
export const HEALTH_SERVICE = {
  Check: method("/grpc.health.v1.Health/Check", UNARY),
};

/**
 * What `Health/Check` answers for a service: a serving status (`UNKNOWN` is sent as an
 * empty message, as protobuf leaves out a default value), or `HANG` (no answer ever).
 */
export type HealthAnswer = "SERVING" | "NOT_SERVING" | "UNKNOWN" | "HANG";

/** The `details` of the NOT_FOUND status `Fail` answers. */
export const FAIL_DETAILS = "no such thing";

/** A running grpc-js server; `await using` shuts it down. */
export interface GrpcServer extends AsyncDisposable {
  /** Its h2c port on 127.0.0.1. */
  port: number;
  /** Resolves once a `Hang` call reached the handler. */
  hangStarted: Promise<void>;
  /** Resolves once the handler of a `Hang` call saw it cancelled. */
  hangCancelled: Promise<void>;
  /** Sets what `Health/Check` answers for `service` ("" = the server as a whole). */
  setHealth(answer: HealthAnswer, service?: string): void;
  /** `Health/Check` calls received, by service asked about. */
  readonly checks: Map<string, number>;
  /** `t.Test/Unary` calls answered. */
  readonly unary: number;
  /** Resolves once a `Trickle` call sent its first message. */
  trickleStarted: Promise<void>;
  /** Drops every connection at once, calls in flight included (a backend that dies). */
  kill(): void;
}

/** Options for {@linkcode startGrpcServer}. */
export interface GrpcServerOptions {
  /** Prefixes `Unary`'s answers with `NAME: `. @default {no prefix} */
  name?: string;
}

/** Starts a grpc-js server (h2c) on a free port of 127.0.0.1 with {@linkcode SERVICE}. */
export async function startGrpcServer(options: GrpcServerOptions = {}): Promise<GrpcServer> {
  const prefix = options.name === undefined ? "" : `${options.name}: `;
  let cancelled!: () => void;
  let started!: () => void;
  const hangCancelled = new Promise<void>((r) => cancelled = r);
  const hangStarted = new Promise<void>((r) => started = r);
  let trickling!: () => void;
  const trickleStarted = new Promise<void>((r) => trickling = r);
  const server = new grpc.Server();
  const health = new Map<string, HealthAnswer>([["", "SERVING"]]);
  const checks = new Map<string, number>();
  let unary = 0;
  server.addService(SERVICE, {
    Unary: (call: { request: Buffer }, cb: grpc.sendUnaryData<Buffer>) => {
      unary++;
      cb(null, Buffer.concat([Buffer.from(`${prefix}hello `), call.request]));
    },
    Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) =>
      cb({ code: grpc.status.NOT_FOUND, details: FAIL_DETAILS }),
    Many: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 5000; i++) call.write(Buffer.from(`message ${i}`));
      call.end();
    },
    Sum: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let sum = 0;
      call.on("data", (d: Buffer) => sum += Number(d.toString()));
      call.on("end", () => cb(null, Buffer.from(String(sum))));
    },
    Echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (d: Buffer) => call.write(d));
      call.on("end", () => call.end());
    },
    Hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
      call.on("cancelled", cancelled);
      started();
    },
    Late: (call: { request: Buffer }, cb: grpc.sendUnaryData<Buffer>) => {
      setTimeout(() => cb(null, Buffer.from("late")), Number(call.request.toString()));
    },
    Trickle: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      call.write(Buffer.from("first"), () => trickling());
    },
  });
  server.addService(HEALTH_SERVICE, {
    Check: (call: { request: Buffer }, cb: grpc.sendUnaryData<Buffer>) => {
      // HealthCheckRequest: field 1 (tag 0x0a), a short string
      const req = call.request;
      const service = req.length > 2 && req[0] === 0x0a
        ? req.subarray(2, 2 + req[1]!).toString()
        : "";
      checks.set(service, (checks.get(service) ?? 0) + 1);
      const answer = health.get(service);
      if (answer === undefined) {
        return cb({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      }
      if (answer === "HANG") return;
      const value = { UNKNOWN: [], SERVING: [0x08, 0x01], NOT_SERVING: [0x08, 0x02] }[answer];
      cb(null, Buffer.from(value));
    },
  });
  const credentials = grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (e, p) => e ? reject(e) : resolve(p))
  );
  return {
    port,
    hangStarted,
    hangCancelled,
    trickleStarted,
    kill: () => server.forceShutdown(),
    setHealth: (answer, service = "") => health.set(service, answer),
    checks,
    get unary() {
      return unary;
    },
    // a hanging health check would hold tryShutdown forever
    [Symbol.asyncDispose]: () =>
      [...health.values()].includes("HANG")
        ? Promise.resolve(server.forceShutdown())
        : new Promise<void>((r) => server.tryShutdown(() => r())),
  };
}
