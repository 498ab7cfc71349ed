/**
 * Helpers for the Redis tests: a `redis-server` of the test's own on a free
 * loopback port (persistence off, so a restart comes back empty), server
 * instances sharing a room through it, in-process or as processes.
 *
 * @module
 */
import { connectRedisSeam, type RedisSeam, type RedisSeamOptions } from "../redis_seam.ts";
import {
  finish,
  runProgram,
  runScript,
  type Script,
  TestClient,
  TestServer,
  WatchedLog,
  within,
} from "./util.ts";
import assert from "node:assert/strict";

/** A `redis-server` of the test's own; `stop()` and `start()` restart it on the same port. */
export interface TestRedis extends AsyncDisposable {
  port: number;
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Runs `redis-cli -p PORT ARGS...` and returns its output lines. */
  cli(...args: string[]): Promise<string[]>;
}

/** A free loopback port: bound, read back, and closed. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts redis-server on 127.0.0.1 with no persistence; ready when it says
 * so. `extra` adds config arguments (`--stream-node-max-entries 10`).
 */
export async function startRedis(password?: string, extra: string[] = []): Promise<TestRedis> {
  const port = freePort();
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    ...extra,
  ];
  if (password !== undefined) args.push("--requirepass", password);
  let redis: Script | undefined;
  const start = async () => {
    redis = runProgram("redis-server", args, {});
    await within(
      10_000,
      "redis-server ready",
      redis.stdout.until((line) => line.includes("Ready to accept connections")),
    );
  };
  const stop = async () => {
    if (redis === undefined) return;
    const running = redis;
    redis = undefined;
    running.child.kill("SIGTERM");
    await within(10_000, "redis-server exit", finish(running));
  };
  await start();
  const auth = password === undefined ? "" : `:${password}@`;
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    stop,
    start,
    async cli(...command: string[]) {
      const output = await within(
        5_000,
        `redis-cli ${command.join(" ")}`,
        new Deno.Command("redis-cli", { args: ["-p", String(port), ...command] }).output(),
      );
      assert.ok(output.success, new TextDecoder().decode(output.stderr));
      return new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "");
    },
    [Symbol.asyncDispose]: stop,
  };
}

/** One server instance sharing the room: an in-process TCP server with a Redis seam. */
export async function instance(
  redis: TestRedis,
  room = "test",
  options: Partial<RedisSeamOptions> = {},
): Promise<TestServer & { seam: RedisSeam }> {
  // The seam's log goes to the server's, so tests can wait on its lines.
  const early: string[] = [];
  const to: { server?: TestServer } = {};
  const seam = await connectRedisSeam({
    url: redis.url,
    room,
    ...options,
    log: (line) => to.server === undefined ? early.push(line) : to.server.record(line),
  });
  const server = to.server = new TestServer({ seam });
  for (const line of early) server.record(line);
  return Object.assign(server, { seam });
}

/** An instance as a process of its own (tests/redis_instance.ts), to SIGKILL or SIGSTOP. */
export interface InstanceProcess extends AsyncDisposable {
  port: number;
  instance: number;
  child: Deno.ChildProcess;
  logs: string[];
  waitLog(match: (line: string) => boolean): Promise<string>;
}

/** Starts tests/redis_instance.ts with the seam's timings given; its log is read as it comes. */
export async function spawnInstance(
  redis: TestRedis,
  room: string,
  timings: { ttlMs: number; everyMs: number; maxLength: number },
): Promise<InstanceProcess> {
  const script = runScript(
    "tests/redis_instance.ts",
    [redis.url, room, String(timings.ttlMs), String(timings.everyMs), String(timings.maxLength)],
    { serverLog: true },
  );
  const log = new WatchedLog();
  const reading = (async () => {
    for (let line = await script.stdout.line(); line !== null; line = await script.stdout.line()) {
      log.line(line);
    }
  })();
  const listening = await within(
    20_000,
    "the instance listening",
    log.waitFor((line) => line.startsWith("listening on ")),
  );
  const [, port, number] = /:(\d+) \(.* instance=(\d+)$/.exec(listening)!;
  return {
    port: Number(port),
    instance: Number(number),
    child: script.child,
    logs: log.lines,
    waitLog: (match) => log.waitFor(match),
    async [Symbol.asyncDispose]() {
      try {
        script.child.kill("SIGKILL");
      } catch {
        // exited already
      }
      await within(10_000, "instance exit", script.child.status);
      await script.stdin.close().catch(() => {});
      await within(5_000, "instance output", Promise.all([reading, script.stderr.rest()]));
    },
  };
}

/** A chat client of a server on 127.0.0.1 `port`, its welcome read. */
export async function connectTo(port: number): Promise<TestClient> {
  const client = new TestClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  assert.match((await within(5_000, "welcome", client.line()))!, /^\* welcome, you are user\d+ /);
  return client;
}

/** Reads until `count` relayed lines (`<name> text`) have come, notices skipped. */
export async function relayed(client: TestClient, count: number): Promise<string[]> {
  const lines: string[] = [];
  while (lines.length < count) {
    const line = await client.line();
    if (line === null) throw new Error(`connection ended after ${lines.length} of ${count} lines`);
    if (line.startsWith("<")) lines.push(line);
  }
  return lines;
}
