/**
 * Argument and error conventions shared by the four scripts, so they all
 * answer bad input the same way: one line on stderr naming the script and what
 * to do, exit 2 for usage errors and 1 for runtime errors, never a stack trace.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  decodeUtf8,
  MAX_MESSAGE_BYTES,
  type Reader,
  readInputMessages,
  writeAll,
} from "./line_buffer.ts";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 9090;
export const EXIT_RUNTIME_ERROR = 1;
export const EXIT_USAGE_ERROR = 2;

/** A bad command line; the message is shown with a pointer to `--help`. */
export class UsageError extends Error {}

/** An expected failure at run time (port in use, refused...); shown as it is, exit 1. */
export class RuntimeError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses `args` strictly: unknown flags, missing values and stray positional
 * arguments are usage errors.
 */
export function parseFlags<T extends Options>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; strict: true }>>["values"] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false })
      .values;
  } catch (error) {
    // node:util's messages are long and mention its own API; keep the first sentence.
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.split(/\. |\n/)[0].replace(/\.$/, ""));
  }
}

/** Parses a whole number in `[min, max]`, naming the flag when it is not one. */
export function parseInteger(
  flag: string,
  value: string,
  min: number,
  max: number,
): number {
  const number = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new UsageError(
      `Cannot parse ${flag} "${value}": must be a whole number from ${min} to ${max}`,
    );
  }
  return number;
}

/** A host name or address: anything but empty (Deno would fail on "" with a stack trace). */
export function parseHost(value: string): string {
  if (value.trim() === "") {
    throw new UsageError(`Cannot parse --host "${value}": give a name or an address`);
  }
  return value;
}

/** The longest timeout a flag takes: a day, in seconds. */
export const MAX_TIMEOUT_S = 86_400;

/**
 * Parses seconds, fractions allowed (0.2 for a quick test), at most a day;
 * 0 only when `zeroMeans` says what it means (it is then part of the error).
 */
export function parseSeconds(flag: string, value: string, zeroMeans?: string): number {
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  const least = zeroMeans === undefined ? "above 0" : `from 0 (${zeroMeans})`;
  if (!(seconds <= MAX_TIMEOUT_S && (seconds > 0 || (seconds === 0 && zeroMeans !== undefined)))) {
    throw new UsageError(
      `Cannot parse ${flag} "${value}": must be seconds ${least}, at most ${MAX_TIMEOUT_S}`,
    );
  }
  return seconds;
}

/** Parses a port: 1-65535, or 0 for "any free port" (what the tests use). */
export function parsePort(value: string): number {
  return parseInteger("--port", value, 0, 65535);
}

/** Accepts one of `choices` for `flag`. */
export function parseChoice<T extends string>(
  flag: string,
  value: string,
  choices: readonly T[],
): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(
      `Cannot parse ${flag} "${value}": must be ${choices.join(" or ")}`,
    );
  }
  return value as T;
}

/** `host:port`, with brackets around an IPv6 address. */
export function formatAddress(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    return `${host}:${addr.port}`;
  }
  return addr.transport;
}

/**
 * Turns an expected failure into the one line a user needs, or returns
 * `undefined` for an unexpected one, which should not be swallowed.
 */
export function describeNetError(
  script: string,
  error: unknown,
  action: string,
): string | undefined {
  if (error instanceof Deno.errors.NotCapable) {
    // Deno names what was asked for: 'Requires net access to "127.0.0.1:9091", ...'.
    // A grant such as --allow-net=127.0.0.1:9090 may cover other addresses only.
    const target = /net access to "([^"]+)"/.exec(error.message)?.[1];
    const narrow = target === undefined ? "" : ` (or --allow-net=${target}, for that alone)`;
    const what = target === undefined ? "" : ` for ${target}`;
    return `${script}: no network permission${what}: run it as deno run --allow-net ${script}${narrow}`;
  }
  const reasons: [new (...args: never[]) => Error, string][] = [
    [Deno.errors.AddrInUse, "address already in use"],
    [Deno.errors.AddrNotAvailable, "address not available on this machine"],
    [Deno.errors.ConnectionRefused, "connection refused"],
    [Deno.errors.ConnectionReset, "connection reset"],
    [Deno.errors.TimedOut, "timed out"],
    [Deno.errors.NetworkUnreachable, "network unreachable"],
    [Deno.errors.PermissionDenied, "permission denied (ports below 1024 need root)"],
  ];
  for (const [kind, reason] of reasons) {
    if (error instanceof kind) return `${action}: ${reason}`;
  }
  // Deno parses the host itself and throws a URIError for one it cannot read ("a b", "h:80").
  if (error instanceof URIError) return `${action}: not a host name or address`;
  // A host name that does not resolve surfaces as a plain Error from getaddrinfo.
  if (error instanceof Error && /failed to lookup|Name or service/i.test(error.message)) {
    return `${action}: unknown host`;
  }
  return undefined;
}

/**
 * Runs `action`; an expected network failure becomes a {@linkcode RuntimeError}
 * saying `script: what: reason`, anything else propagates as the bug it is.
 */
export async function withNetErrors<T>(
  script: string,
  what: string,
  action: () => T | Promise<T>,
): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const message = describeNetError(script, error, `${script}: ${what}`);
    if (message === undefined) throw error;
    throw new RuntimeError(message);
  }
}

/** An error's message, for a log line. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The most log output that may wait for a slow console before lines are dropped. */
export const MAX_LOG_BUFFER_BYTES = 1024 * 1024;
// How long log lines gather before they are written: a server that handles one
// datagram per turn of the event loop would otherwise still write once per line.
const LOG_BATCH_MS = 10;
// After a shutdown, how long the rest of the log may take to be written: with
// the 2 s for peers' FINs, the whole shutdown stays inside 3 s.
const LOG_FLUSH_LIMIT_MS = 500;

/** A server's console log: `line()` to log, `flushed()` to wait for it all to be written. */
export interface ConsoleLog {
  line(text: string): void;
  flushed(): Promise<void>;
}

/**
 * Logs to `out` (stdout) in batches. A busy server logs tens of thousands of
 * lines a second (every chat line, every datagram), and console.log's write
 * per line took a third of its time; here the lines of up to LOG_BATCH_MS go
 * out in one write. If the console cannot keep up, at most
 * MAX_LOG_BUFFER_BYTES wait; later lines are dropped and counted, so a slow
 * terminal never stalls the server or grows its memory.
 */
export function consoleLog(
  out: { write(bytes: Uint8Array): Promise<number> } = Deno.stdout,
): ConsoleLog {
  const encoder = new TextEncoder();
  let pending: string[] = [];
  let pendingBytes = 0;
  let dropped = 0;
  let writing: Promise<void> | undefined;

  async function drain(): Promise<void> {
    try {
      while (pending.length > 0 || dropped > 0) {
        if (dropped > 0) pending.push(`(${dropped} log lines dropped: the console is too slow)`);
        dropped = 0;
        const text = pending.join("\n") + "\n";
        pending = [];
        pendingBytes = 0;
        await writeAll(out, encoder.encode(text));
      }
    } catch {
      // The console is gone (closed pipe): nothing can be logged any more.
      pending = [];
    } finally {
      writing = undefined;
    }
  }

  return {
    line(text: string): void {
      if (pendingBytes + text.length > MAX_LOG_BUFFER_BYTES) {
        dropped++;
        return;
      }
      pending.push(text);
      pendingBytes += text.length + 1;
      writing ??= new Promise((resolve) => setTimeout(resolve, LOG_BATCH_MS)).then(drain);
    },
    async flushed(): Promise<void> {
      while (writing !== undefined) await writing;
    },
  };
}

/** What the TCP and UDP servers both offer to {@linkcode serve}. */
export interface ConsoleServer {
  addr: Deno.Addr;
  /** Runs a console command or relays a console line, as if typed at the server. */
  console(line: string): void;
  /** Ends the server gracefully; resolves as `finished` does. */
  shutdown(): Promise<void>;
  /** Resolves when the server has shut down. */
  finished: Promise<void>;
}

/**
 * Runs a started server until it shuts down: prints the listening line,
 * shuts down on SIGINT or SIGTERM, and feeds it the lines typed at the
 * console. The server keeps running when stdin ends.
 */
export async function serve(
  script: string,
  server: ConsoleServer,
  description: string,
  log: ConsoleLog,
): Promise<number> {
  log.line(`listening on ${formatAddress(server.addr)} (${description})`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => server.shutdown());
  }
  (async () => {
    try {
      // As in the clients, a console line too long for one message is text in
      // every piece: no piece of it can run as a console command.
      const input = readInputMessages(Deno.stdin, MAX_MESSAGE_BYTES, { piecesAsText: true });
      for await (const message of input) {
        server.console(decodeUtf8(message));
      }
    } catch (error) {
      console.error(`${script}: console input failed: ${errorText(error)}`);
    }
  })();
  await server.finished;
  // The log gets a moment to reach the console, no more: a console nobody
  // reads (a stalled pipe, a paused terminal) must not keep the server alive.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise((resolve) => timer = setTimeout(resolve, LOG_FLUSH_LIMIT_MS));
  await Promise.race([log.flushed(), limit]);
  clearTimeout(timer);
  return 0;
}

/** What a server offers: a chat room or an echo service. */
export type Mode = "chat" | "echo";

/** The flags both servers take, for {@linkcode parseFlags}. */
export const SERVER_FLAGS = {
  host: { type: "string", default: DEFAULT_HOST },
  port: { type: "string", default: String(DEFAULT_PORT) },
  mode: { type: "string", default: "chat" },
  help: { type: "boolean", default: false },
} as const;

/** Where and how a server listens, from its flags. */
export interface ListenOptions {
  host: string;
  port: number;
  mode: Mode;
}

/** Parses `--host`, `--port` and `--mode`; throws a {@linkcode UsageError} for a bad one. */
export function parseListenFlags(
  flags: { host: string; port: string; mode: string },
): ListenOptions {
  return {
    host: parseHost(flags.host),
    port: parsePort(flags.port),
    mode: parseChoice("--mode", flags.mode, ["chat", "echo"] as const),
  };
}

/**
 * Starts a server with `start` (given the console log to write to) and runs
 * it with {@linkcode serve} until it shuts down; a port in use or a missing
 * permission becomes a {@linkcode RuntimeError}. Resolves with the exit code.
 */
export async function runServer(
  script: string,
  transport: "tcp" | "udp",
  listen: ListenOptions,
  start: (log: (line: string) => void) => ConsoleServer,
): Promise<number> {
  const log = consoleLog();
  const server = await withNetErrors(
    script,
    `cannot listen on ${formatAddress({ transport, hostname: listen.host, port: listen.port })}`,
    () => start(log.line),
  );
  return await serve(script, server, `${transport}, ${listen.mode}`, log);
}

/**
 * Standard input for a client: a read that fails (stdin is a directory, or
 * was closed under us) becomes a {@linkcode RuntimeError} of one line.
 */
export function standardInput(script: string): Reader {
  return {
    async read(buffer: Uint8Array): Promise<number | null> {
      try {
        return await Deno.stdin.read(buffer);
      } catch (error) {
        throw new RuntimeError(`${script}: cannot read standard input: ${errorText(error)}`);
      }
    },
  };
}

/** Prints `message` on stderr and exits with `code`. */
export function fail(message: string, code: number = EXIT_RUNTIME_ERROR): never {
  console.error(message);
  Deno.exit(code);
}

/**
 * Runs a script's `main`, turning usage errors, runtime errors and a missing
 * permission into one line on stderr; anything else is a bug and keeps its
 * stack trace.
 */
export async function runMain(
  script: string,
  main: () => Promise<number | void>,
): Promise<void> {
  try {
    const code = await main();
    Deno.exit(code ?? 0);
  } catch (error) {
    if (error instanceof UsageError) {
      fail(`${script}: ${error.message} (see --help)`, EXIT_USAGE_ERROR);
    }
    if (error instanceof RuntimeError) fail(error.message, EXIT_RUNTIME_ERROR);
    if (error instanceof Deno.errors.NotCapable) {
      fail(describeNetError(script, error, "")!);
    }
    throw error;
  }
}
