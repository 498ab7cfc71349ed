/**
 * Test helpers shared by every test file: reading lines from a socket or a
 * child's output, an in-process TCP server with clients, and running the real
 * scripts as processes.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  type Server,
  type ServerOptions,
  startServer,
  startTlsServer,
  type TlsOptions,
} from "../server.ts";
import { writeAll } from "../line_buffer.ts";

/** Spawning the scripts needs more than `--allow-net`; see the README's test command. */
export const CAN_SPAWN = ["run", "read", "env"].every((name) =>
  Deno.permissions.querySync({ name } as Deno.PermissionDescriptor).state === "granted"
);
/** Passed as `ignore` by tests that spawn processes, so `deno test --allow-net` still passes. */
export const NEEDS_SPAWN = !CAN_SPAWN;

/** The project's root folder (where the scripts are). */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Resolves as `promise` does, or fails after `ms` milliseconds: for waits on
 * something that broken code would never do, so a regression fails instead
 * of hanging the run.
 */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Encodes text, for writing to sockets in tests. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Reads "\n"-terminated lines from any `read()`-able source, keeping what comes
 * after a line for the next call. For tests only: it buffers without a bound.
 */
export class LineReader {
  #source: { read(buffer: Uint8Array): Promise<number | null> };
  #pending = new Uint8Array(0);
  #buffer = new Uint8Array(64 * 1024);
  #ended = false;

  constructor(source: { read(buffer: Uint8Array): Promise<number | null> }) {
    this.#source = source;
  }

  /** The next line without its "\n", or `null` at end of stream. */
  async line(): Promise<string | null> {
    while (true) {
      const newline = this.#pending.indexOf(0x0a);
      if (newline !== -1) {
        const line = decoder.decode(this.#pending.subarray(0, newline));
        this.#pending = this.#pending.slice(newline + 1);
        return line;
      }
      if (this.#ended) return null;
      const n = await this.#source.read(this.#buffer).catch((error) => {
        if (error instanceof Deno.errors.ConnectionReset) return null;
        throw error;
      });
      if (n === null) {
        this.#ended = true;
        continue;
      }
      const joined = new Uint8Array(this.#pending.length + n);
      joined.set(this.#pending);
      joined.set(this.#buffer.subarray(0, n), this.#pending.length);
      this.#pending = joined;
    }
  }

  /** Reads lines until one satisfies `match`; fails at end of stream. */
  async until(match: (line: string) => boolean): Promise<string> {
    while (true) {
      const line = await this.line();
      if (line === null) throw new Error("stream ended before the expected line");
      if (match(line)) return line;
    }
  }

  /** Reads lines until end of stream. */
  async rest(): Promise<string[]> {
    const lines: string[] = [];
    for (let line = await this.line(); line !== null; line = await this.line()) {
      lines.push(line);
    }
    return lines;
  }

  /** Bytes received after the last complete line (an unterminated tail). */
  get tail(): string {
    return decoder.decode(this.#pending);
  }
}

/** The ISO 8601 UTC time and a space that begin every line of a server's log (consoleLog). */
export const LOG_STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /;

/**
 * Reads a server's log: each line must begin with its time ({@linkcode LOG_STAMP},
 * a real instant), or the read fails naming the line; the line comes without
 * it, so tests match what was logged.
 */
export class ServerLogReader extends LineReader {
  override async line(): Promise<string | null> {
    const line = await super.line();
    if (line === null) return null;
    const stamp = LOG_STAMP.exec(line);
    const at = stamp === null ? NaN : Date.parse(stamp[1]);
    if (stamp === null || Number.isNaN(at) || new Date(at).toISOString() !== stamp[1]) {
      throw new Error(`server log line without its time stamp: ${JSON.stringify(line)}`);
    }
    return line.slice(stamp[0].length);
  }
}

/** A script running as a child process, with line readers on its output. */
export interface Script {
  child: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  stdout: LineReader;
  stderr: LineReader;
}

/**
 * Runs `program` with piped stdin, stdout and stderr and line readers on its
 * output; `serverLog` reads stdout as a server's log ({@linkcode ServerLogReader}).
 */
export function runProgram(
  program: string,
  args: string[],
  env: Record<string, string> = {},
  serverLog = false,
  cwd = ROOT,
): Script {
  const child = new Deno.Command(program, {
    args,
    cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  return {
    child,
    stdin: child.stdin.getWriter(),
    stdout: new (serverLog ? ServerLogReader : LineReader)(streamSource(child.stdout)),
    stderr: new LineReader(streamSource(child.stderr)),
  };
}

/**
 * Runs `deno run --allow-net <script> ...args` from the project folder (or
 * from `cwd`, the script then named by its absolute path), with piped stdin,
 * stdout and stderr. With `serverLog`, stdout is a running server's log:
 * every line must carry its time stamp, which is taken off.
 */
export function runScript(
  script: string,
  args: string[],
  options: { permissions?: string[]; serverLog?: boolean; cwd?: string } = {},
): Script {
  const permissions = options.permissions ?? ["--allow-net"];
  return runProgram(
    Deno.execPath(),
    ["run", "--quiet", ...permissions, script, ...args],
    { NO_COLOR: "1" },
    options.serverLog,
    options.cwd,
  );
}

/** Adapts a byte stream to the `read(buffer)` contract of a `Deno.Conn`. */
export function streamSource(
  stream: ReadableStream<Uint8Array>,
): { read(buffer: Uint8Array): Promise<number | null> } {
  const reader = stream.getReader();
  let leftover: Uint8Array = new Uint8Array(0);
  return {
    async read(buffer: Uint8Array): Promise<number | null> {
      if (leftover.length === 0) {
        const { value, done } = await reader.read();
        if (done) return null;
        leftover = value;
      }
      const n = Math.min(buffer.length, leftover.length);
      buffer.set(leftover.subarray(0, n));
      leftover = leftover.subarray(n);
      return n;
    },
  };
}

/**
 * Starts a server script on port 0 and returns it with the port it printed in
 * its `listening on HOST:PORT (...)` line. Its stdout is read as its log
 * (every line time-stamped, the stamp taken off).
 */
export async function startScriptServer(
  script: string,
  args: string[] = [],
): Promise<Script & { port: number }> {
  const server = runScript(script, ["--port", "0", ...args], { serverLog: true });
  const line = await server.stdout.until((line) => line.startsWith("listening on "));
  const port = Number(/:(\d+) \(/.exec(line)![1]);
  return { ...server, port };
}

/** Closes a child's stdin (ignoring "already closed") and waits for it to exit. */
export async function finish(script: Script): Promise<Deno.CommandStatus> {
  await script.stdin.close().catch(() => {});
  const status = await script.child.status;
  await Promise.all([script.stdout.rest(), script.stderr.rest()]);
  return status;
}

// ---- an in-process TCP server and its clients

/** A log whose lines a test can wait for: pass `watched.line` as a server's `log`. */
export class WatchedLog {
  readonly lines: string[] = [];
  #waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];

  line = (text: string): void => {
    this.lines.push(text);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.match(text)) return true;
      waiter.resolve(text);
      return false;
    });
  };

  /** Resolves with the first line, past or future, that matches. */
  waitFor(match: string | RegExp | ((line: string) => boolean)): Promise<string> {
    const test = typeof match === "function"
      ? match
      : (line: string) => typeof match === "string" ? line === match : match.test(line);
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match: test, resolve }));
  }

  /** Resolves once `count` lines have matched. */
  async waitForCount(match: RegExp, count: number): Promise<string[]> {
    while (true) {
      const matching = this.lines.filter((line) => match.test(line));
      if (matching.length >= count) return matching;
      await new Promise<string>((resolve) =>
        this.#waiters.push({ match: (line) => match.test(line), resolve })
      );
    }
  }
}

/** A server whose log lines can be awaited. */
export class TestServer {
  server: Server;
  readonly #log = new WatchedLog();

  /** Starts a plain server on 127.0.0.1, port 0; or wraps `running`, whose log goes to `record`. */
  constructor(options: ServerOptions = {}, running?: Server) {
    this.server = running ??
      startServer({ host: "127.0.0.1", port: 0, ...options, log: (line) => this.record(line) });
  }

  /** Starts a server that speaks TLS ({@linkcode startTlsServer}) on 127.0.0.1, port 0. */
  static async tls(options: ServerOptions & { tls: TlsOptions }): Promise<TestServer> {
    // Nothing is logged before the listener is up, but a line is never dropped.
    const early: string[] = [];
    let record = (line: string): void => void early.push(line);
    const server = await startTlsServer({
      host: "127.0.0.1",
      port: 0,
      ...options,
      log: (line) => record(line),
    });
    const test = new TestServer(options, server);
    for (const line of early) test.record(line);
    record = (line) => test.record(line);
    return test;
  }

  /** Keeps a log line of the server and wakes whoever waits for it. */
  record(line: string): void {
    this.#log.line(line);
  }

  /** Every log line so far. */
  get logs(): string[] {
    return this.#log.lines;
  }

  get port(): number {
    return this.server.addr.port;
  }

  /** Resolves with the first log line, past or future, that matches. */
  waitLog(match: (line: string) => boolean): Promise<string> {
    return this.#log.waitFor(match);
  }

  async connect(): Promise<TestClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
    return new TestClient(conn);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.shutdown();
  }
}

export function disposeAll(...clients: TestClient[]): Disposable {
  return { [Symbol.dispose]: () => clients.forEach((client) => client[Symbol.dispose]()) };
}

export class TestClient {
  conn: Deno.TcpConn;
  lines: LineReader;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.lines = new LineReader(conn);
  }

  /** Writes all of a text (encoded) or of raw bytes. */
  send(data: string | Uint8Array | number[]): Promise<void> {
    const raw = typeof data === "string" ? bytes(data) : new Uint8Array(data);
    return writeAll(this.conn, raw);
  }

  line(): Promise<string | null> {
    return this.lines.line();
  }

  until(match: string | RegExp): Promise<string> {
    return this.lines.until((line) =>
      typeof match === "string" ? line === match : match.test(line)
    );
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // closed by the test already
    }
  }
}

/** Connects a chat client and reads its welcome line. */
export async function join(server: TestServer): Promise<TestClient> {
  const client = await server.connect();
  assert.match((await client.line())!, /^\* welcome, you are user\d+ /);
  return client;
}

/** Connects `count` chat clients; each one has read the join notices of those after it. */
export async function room(server: TestServer, count: number): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < count; i++) {
    const client = await join(server);
    const name = (await server.waitLog((line) =>
      line.startsWith("connected ") &&
      !clients.some((c) => line.includes(`:${(c.conn.localAddr as Deno.NetAddr).port} `)) &&
      line.includes(`:${(client.conn.localAddr as Deno.NetAddr).port} `)
    )).split(" ")[3];
    for (const earlier of clients) assert.equal(await earlier.line(), `* ${name} joined`);
    clients.push(client);
  }
  return clients;
}

// ---- input for the clients

/**
 * Lines a user might type that are too long for one message: pieces that
 * begin with "/", and grapheme clusters across the cut. For both clients.
 */
export const LONG_LINES = [
  "x".repeat(255) + "/nick hijacked", // the second piece begins with /nick
  "/".repeat(600), // every piece begins with /, the first too
  "y".repeat(254) + "/quit", // the second piece is exactly /quit
  "//quit", // typed text beginning with /
  "z".repeat(255) + "/quit", // the client once stopped here
  "a".repeat(250) + "🇧🇪👨‍👩‍👧‍👦👋🏽e\u0301", // clusters across the cut
  "/nick carol", // a line that fits is a command as typed
];

/** The text the room relays for LONG_LINES, piece by piece (all but the last line). */
export const LONG_LINES_RELAYED = [
  "x".repeat(254),
  "x/nick hijacked",
  "/".repeat(254),
  "/".repeat(254),
  "/".repeat(92),
  "y".repeat(254),
  "/quit",
  "/quit",
  "z".repeat(254),
  "z/quit",
  "a".repeat(250),
  "🇧🇪👨‍👩‍👧‍👦👋🏽e\u0301",
];
