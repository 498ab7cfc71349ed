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
/** Exit code after Ctrl-C: 128 + SIGINT (2), as shells report a process ended by it. */
export const EXIT_INTERRUPTED = 130;

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

/**
 * A host name or address, returned without brackets, as Deno and node take
 * it: anything but empty (Deno would fail on "" with a stack trace), an IPv6
 * address bare or in brackets as in a URL (`::1`, `[::1]`: RFC 3986, section
 * 3.2.2), and a link-local IPv6 address only with its zone. Brackets around
 * anything else, or a lone one, are refused.
 *
 * A link-local address (fe80::/10) is the same on every interface, so the
 * system needs the zone, the interface after `%`, to use one (RFC 4007,
 * section 11): Linux refuses a bare one with EINVAL for connect and listen.
 * Deno 2.9 takes the zone by name or by number (`fe80::1%eth0`,
 * `fe80::1%2`) for connect, listen, listenDatagram and send.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHost } from "./cli.ts";
 * assert.equal(parseHost("[::1]"), "::1");
 * assert.equal(parseHost("fe80::1%eth0"), "fe80::1%eth0");
 * assert.throws(() => parseHost("fe80::1"), /needs its zone, .* as in fe80::1%eth0$/);
 * ```
 */
export function parseHost(value: string): string {
  if (value.trim() === "") {
    throw new UsageError(`Cannot parse --host "${value}": give a name or an address`);
  }
  const bracketed = /^\[(.*)\]$/.exec(value);
  const address = bracketed?.[1] ?? value;
  // host:port (one colon, so not IPv6) or [v6]:port: the port has a flag of its own.
  if (/^\[.*\]:\d*$/.test(value) || /^[^:[\]]+:\d*$/.test(value)) {
    throw new UsageError(`Cannot parse --host "${value}": give the port with --port`);
  }
  if (/[[\]]/.test(address) || (bracketed !== null && !address.includes(":"))) {
    throw new UsageError(
      `Cannot parse --host "${value}": brackets go around an IPv6 address only, as in [::1]`,
    );
  }
  const zone = address.indexOf("%");
  if (zone === -1 && isLinkLocalIpv6(address)) {
    throw new UsageError(
      `Cannot parse --host "${value}": a link-local address needs its zone, ` +
        `the interface to use, as in ${address}%eth0`,
    );
  }
  if (zone === address.length - 1) {
    throw new UsageError(
      `Cannot parse --host "${value}": the zone after % is empty (name the interface, as in ` +
        `${address}eth0)`,
    );
  }
  return address;
}

/** Is `address` an IPv6 address in fe80::/10? (The first 10 bits are 1111111010.) */
function isLinkLocalIpv6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
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

/**
 * `host:port`, the one way every script writes an address (logs, `/list`,
 * messages) and the UDP server keys its peers: the host as
 * {@linkcode canonicalHost} spells it, in brackets when it is IPv6. So an
 * IPv4 peer of a server on `::`, which Deno reports as `::ffff:127.0.0.1`,
 * is `127.0.0.1:PORT`, as it would be on `127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAddress } from "./cli.ts";
 * assert.equal(formatAddress({ transport: "tcp", hostname: "::1", port: 9090 }), "[::1]:9090");
 * assert.equal(
 *   formatAddress({ transport: "udp", hostname: "::ffff:127.0.0.1", port: 9090 }),
 *   "127.0.0.1:9090",
 * );
 * ```
 */
export function formatAddress(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    const host = canonicalHost(addr.hostname);
    return `${host.includes(":") ? `[${host}]` : host}:${addr.port}`;
  }
  return addr.transport;
}

/**
 * One spelling per address: IPv6 in its shortest form, in lower case (RFC
 * 5952, as WHATWG URL writes it), its zone kept as written; an IPv4-mapped
 * IPv6 address (`::ffff:0:0/96`, RFC 4291, section 2.5.5.2: how a socket on
 * `::` sees an IPv4 peer) as the IPv4 address it is; anything else (IPv4, a
 * host name, what is not an address) as written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalHost } from "./cli.ts";
 * assert.equal(canonicalHost("::FFFF:7F00:1"), "127.0.0.1");
 * assert.equal(canonicalHost("fe80:0::1%lo"), "fe80::1%lo");
 * ```
 */
export function canonicalHost(hostname: string): string {
  if (!hostname.includes(":")) return hostname;
  // A UDP server on :: spells every datagram's source: parse each address once.
  let canonical = canonicalHosts.get(hostname);
  if (canonical === undefined) {
    if (canonicalHosts.size >= MAX_CANONICAL_HOSTS) canonicalHosts.clear();
    canonical = canonicalIpv6(hostname);
    canonicalHosts.set(hostname, canonical);
  }
  return canonical;
}

// IPv6 spellings already made canonical, at most this many (then forgotten at once).
const MAX_CANONICAL_HOSTS = 1024;
const canonicalHosts = new Map<string, string>();

function canonicalIpv6(hostname: string): string {
  const zoneAt = hostname.indexOf("%");
  const address = zoneAt === -1 ? hostname : hostname.slice(0, zoneAt);
  let short: string;
  try {
    // URL cannot parse a zone, hence the slice (0.4 µs a call: cheap per datagram).
    short = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return hostname;
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(short);
  if (mapped !== null) {
    const [high, low] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return zoneAt === -1 ? short : short + hostname.slice(zoneAt);
}

// EACCES and EPERM: Linux answers one or the other for a firewall rule.
const FORBIDDEN = {
  local: "permission denied (ports below 1024 need root)",
  remote: "forbidden by a firewall or a route of this machine, or a broadcast address " +
    "(permission denied)",
};

/**
 * Why a socket call failed, by the errno name Deno puts in `error.code`: what
 * it means for the user first, the system's own words in parentheses. Where
 * the meaning differs, `local` is for our own address (listen, bind) and
 * `remote` for the peer's (connect, send). Linux errno(3) and the causes seen
 * from Deno 2.9: EHOSTUNREACH from an "unreachable" route, EACCES from a
 * "prohibit" route or a firewall, EINVAL from a link-local address without
 * its zone or a "blackhole" route, EADDRNOTAVAIL when connecting over IPv6
 * from a machine with no IPv6 address, EAFNOSUPPORT with IPv6 turned off.
 */
const NET_ERROR_REASONS: Record<string, string | { local: string; remote: string }> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: {
    local: "not an address of this machine (address not available)",
    remote: "no address of this machine can reach it (address not available)",
  },
  EAFNOSUPPORT: "this machine has that address family, IPv4 or IPv6, turned off " +
    "(address family not supported)",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ECONNABORTED: "connection aborted",
  ETIMEDOUT: "no answer in time (timed out)",
  ENETUNREACH: "no route to that network (network is unreachable)",
  EHOSTUNREACH: "no route to that host (host is unreachable)",
  ENETDOWN: "the network interface is down (network is down)",
  EHOSTDOWN: "that host is down (host is down)",
  EACCES: FORBIDDEN,
  EPERM: FORBIDDEN,
  EINVAL: "the system refuses that address: a blackhole route, or a link-local address " +
    "without its zone, as in fe80::1%eth0 (invalid argument)",
  ENODEV: "no such network interface (no such device)",
};

// For an error without a code (one made by hand, or from a Deno that sets
// none): its class, or the system's words that end its message, name the errno.
const NET_ERROR_CLASSES: [new (...args: never[]) => Error, string][] = [
  [Deno.errors.AddrInUse, "EADDRINUSE"],
  [Deno.errors.AddrNotAvailable, "EADDRNOTAVAIL"],
  [Deno.errors.ConnectionRefused, "ECONNREFUSED"],
  [Deno.errors.ConnectionReset, "ECONNRESET"],
  [Deno.errors.ConnectionAborted, "ECONNABORTED"],
  [Deno.errors.TimedOut, "ETIMEDOUT"],
  [Deno.errors.NetworkUnreachable, "ENETUNREACH"],
  [Deno.errors.PermissionDenied, "EACCES"],
];
const NET_ERROR_TEXTS: [RegExp, string][] = [
  [/^No route to host \(os error/, "EHOSTUNREACH"],
  [/^Address family not supported by protocol \(os error/, "EAFNOSUPPORT"],
  [/^Invalid argument \(os error/, "EINVAL"],
  [/^No such device \(os error/, "ENODEV"], // Deno 2.9 sets no code for this one
  [/^Network is down \(os error/, "ENETDOWN"],
  [/^Host is down \(os error/, "EHOSTDOWN"],
];

/** The errno name of an expected socket error, or undefined for anything else. */
function netErrno(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return Object.hasOwn(NET_ERROR_REASONS, code) ? code : undefined;
  for (const [kind, errno] of NET_ERROR_CLASSES) {
    if (error instanceof kind) return errno;
  }
  return NET_ERROR_TEXTS.find(([text]) => text.test(error.message))?.[1];
}

/**
 * Turns an expected failure into the one line a user needs, or returns
 * `undefined` for an unexpected one, which should not be swallowed.
 *
 * `action` says what failed, with the address as {@linkcode formatAddress}
 * writes it (`script: cannot connect to HOST:PORT`); its verb tells our own
 * address (listen, bind, open) from the peer's (connect, send) where the
 * reason differs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeNetError } from "./cli.ts";
 * const error = Object.assign(new Error("No route to host (os error 113)"), {
 *   code: "EHOSTUNREACH",
 * });
 * assert.equal(
 *   describeNetError("client.ts", error, "client.ts: cannot connect to 10.0.0.1:9090"),
 *   "client.ts: cannot connect to 10.0.0.1:9090: no route to that host (host is unreachable)",
 * );
 * ```
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
  // Deno parses the host itself and throws a URIError for one it cannot read ("a b", "h:80").
  if (error instanceof URIError) return `${action}: not a host name or address`;
  if (!(error instanceof Error)) return undefined;
  // The zone of "[fe80::1%eth0]:9090": an interface that does not exist fails
  // the lookup by name, and with ENODEV by number.
  const zone = /%([^\]\s]+)\]/.exec(action)?.[1];
  const lookupFailed = /failed to lookup|Name or service/i.test(error.message);
  const errno = netErrno(error);
  if (zone !== undefined && (lookupFailed || errno === "ENODEV")) {
    return `${action}: no network interface "${zone}" on this machine (the zone after %)`;
  }
  // A host name that does not resolve surfaces as a plain Error from getaddrinfo.
  if (lookupFailed) return `${action}: unknown host`;
  if (errno === undefined) return undefined;
  const reason = NET_ERROR_REASONS[errno];
  if (typeof reason === "string") return `${action}: ${reason}`;
  // "server.ts: cannot listen on ...": the verb, not a host name that contains one.
  const ours = /^(?:[^:\s]+: )?cannot (?:listen|bind|open)\b/i.test(action);
  return `${action}: ${ours ? reason.local : reason.remote}`;
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

/** Options of {@linkcode consoleLog}. */
export interface ConsoleLogOptions {
  /**
   * Stamps each line with this clock's time, in milliseconds since the epoch
   * (`Date.now`), written in ISO 8601 UTC (`2026-11-30T02:45:00.123Z listening
   * on ...`) so that a log file can be read later. No stamp without it.
   */
  clock?: () => number;
}

/**
 * Logs to `out` (stdout) in batches. A busy server logs tens of thousands of
 * lines a second (every chat line, every datagram), and console.log's write
 * per line took a third of its time; here the lines of up to LOG_BATCH_MS go
 * out in one write. If the console cannot keep up, at most
 * MAX_LOG_BUFFER_BYTES wait; later lines are dropped and counted, so a slow
 * terminal never stalls the server or grows its memory.
 *
 * @example
 * ```ts
 * import { consoleLog } from "./cli.ts";
 * const log = consoleLog(Deno.stdout, { clock: Date.now });
 * log.line("listening on 127.0.0.1:9090 (tcp, chat)");
 * await log.flushed(); // 2026-11-30T02:45:00.123Z listening on 127.0.0.1:9090 (tcp, chat)
 * ```
 */
export function consoleLog(
  out: { write(bytes: Uint8Array): Promise<number> } = Deno.stdout,
  options: ConsoleLogOptions = {},
): ConsoleLog {
  const encoder = new TextEncoder();
  const clock = options.clock;
  let pending: string[] = [];
  let pendingBytes = 0;
  let dropped = 0;
  let writing: Promise<void> | undefined;
  // Lines come in bursts within one millisecond: its stamp is formatted once.
  let stampedAt = NaN;
  let stamp = "";
  function stamped(text: string): string {
    if (clock === undefined) return text;
    const now = clock();
    if (now !== stampedAt) {
      stampedAt = now;
      stamp = new Date(now).toISOString() + " ";
    }
    return stamp + text;
  }

  async function drain(): Promise<void> {
    try {
      while (pending.length > 0 || dropped > 0) {
        if (dropped > 0) {
          pending.push(stamped(`(${dropped} log lines dropped: the console is too slow)`));
        }
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
      const line = stamped(text);
      if (pendingBytes + line.length > MAX_LOG_BUFFER_BYTES) {
        dropped++;
        return;
      }
      pending.push(line);
      pendingBytes += line.length + 1;
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
  /** True once a shutdown has begun (a signal, or the console's `/quit`). */
  readonly shuttingDown: boolean;
}

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Read console lines from stdin (default true); `--no-console` turns it off. */
  console?: boolean;
}

/** Logged once when stdin ends: the server is still running, and this is how to stop it. */
export const CONSOLE_CLOSED =
  "console closed (end of input); still serving: stop with Ctrl-C or SIGTERM";
/** Logged at the start with `--no-console`. */
export const CONSOLE_OFF = "console off (--no-console); stop with Ctrl-C or SIGTERM";

/**
 * Runs a started server until it shuts down: logs the listening line, shuts
 * down on SIGINT or SIGTERM, and feeds it the lines typed at the console
 * (unless `options.console` is false). When stdin ends, or a read of it
 * fails, the server says so once in the log and keeps running. Resolves with
 * the exit code, 0.
 */
export async function serve(
  server: ConsoleServer,
  description: string,
  log: ConsoleLog,
  options: ServeOptions = {},
): Promise<number> {
  log.line(`listening on ${formatAddress(server.addr)} (${description})`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => server.shutdown());
  }
  if (options.console ?? true) readConsole(server, log);
  else log.line(CONSOLE_OFF);
  await server.finished;
  // The log gets a moment to reach the console, no more: a console nobody
  // reads (a stalled pipe, a paused terminal) must not keep the server alive.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise((resolve) => timer = setTimeout(resolve, LOG_FLUSH_LIMIT_MS));
  await Promise.race([log.flushed(), limit]);
  clearTimeout(timer);
  return 0;
}

/**
 * Feeds the lines of stdin to the server's console until stdin ends.
 *
 * Why `--no-console` is a flag and not a check: a background job that reads
 * its terminal is stopped by SIGTTIN, and its clients hang. In Deno 2.9 a
 * SIGTTIN listener only makes the kernel restart the read and signal again
 * (20,000 times a second, a core spinning; the read cannot be cancelled), and
 * only /proc/self/stat, behind --allow-read, tells a process that it is not
 * in the foreground.
 */
function readConsole(server: ConsoleServer, log: ConsoleLog): void {
  (async () => {
    try {
      // As in the clients, a console line too long for one message is text in
      // every piece: no piece of it can run as a console command.
      const input = readInputMessages(Deno.stdin, MAX_MESSAGE_BYTES, { piecesAsText: true });
      for await (const message of input) {
        server.console(decodeUtf8(message));
      }
      // After /quit the end of input is no news: the server is on its way out.
      if (!server.shuttingDown) log.line(CONSOLE_CLOSED);
    } catch (error) {
      log.line(
        `console input failed: ${errorText(error)}; still serving: stop with Ctrl-C or SIGTERM`,
      );
    }
  })();
}

/** What a server offers: a chat room or an echo service. */
export type Mode = "chat" | "echo";

/** The flags both servers take, for {@linkcode parseFlags}. */
export const SERVER_FLAGS = {
  host: { type: "string", default: DEFAULT_HOST },
  port: { type: "string", default: String(DEFAULT_PORT) },
  mode: { type: "string", default: "chat" },
  "reuse-port": { type: "boolean", default: false },
  "no-console": { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

/** The room a server joins with `--redis` when `--room` is not given. */
export const DEFAULT_ROOM = "main";

/** `--redis URL` and `--room NAME`, which both servers take, for {@linkcode parseFlags}. */
export const REDIS_FLAGS = {
  redis: { type: "string" },
  room: { type: "string" },
} as const;

/** Where a room shared over Redis lives, from `--redis` and `--room`. */
export interface RedisFlags {
  url: string;
  room: string;
}

/**
 * `url` with its password, if any, replaced by `****`: how a Redis URL is
 * shown in logs and errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maskRedisUrl } from "./cli.ts";
 * assert.equal(maskRedisUrl("redis://:secret@127.0.0.1:6379"), "redis://:****@127.0.0.1:6379");
 * ```
 */
export function maskRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(a Redis URL that cannot be parsed)";
  }
  if (parsed.password !== "") parsed.password = "****";
  return parsed.href.replace(/\/$/, "");
}

/**
 * Parses `--redis` and `--room`: `undefined` without `--redis` (the room is
 * in-process). A URL must be `redis://` or `rediss://` with a host; a room
 * name 1-64 of A-Z a-z 0-9 _ . -; both need chat mode.
 */
export function parseRedisFlags(
  flags: { redis?: string; room?: string },
  mode: Mode,
): RedisFlags | undefined {
  if (flags.redis === undefined) {
    if (flags.room !== undefined) throw new UsageError("--room names a room shared with --redis");
    return undefined;
  }
  let url: URL | undefined;
  try {
    url = new URL(flags.redis);
  } catch {
    url = undefined;
  }
  if (url === undefined || !["redis:", "rediss:"].includes(url.protocol) || url.hostname === "") {
    throw new UsageError(
      `Cannot parse --redis "${maskRedisUrl(flags.redis)}": give redis://HOST:PORT ` +
        "(or redis://:PASSWORD@HOST:PORT)",
    );
  }
  const room = flags.room ?? DEFAULT_ROOM;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(room)) {
    throw new UsageError(`Cannot parse --room "${room}": use 1-64 of A-Z a-z 0-9 _ . -`);
  }
  if (mode !== "chat") throw new UsageError("--redis shares a chat room: --mode echo has none");
  return { url: flags.redis, room };
}

/**
 * Connects the seam of a room shared over Redis (redis_seam.ts, loaded only
 * here, so a server without `--redis` fetches no package). A Redis that
 * cannot be reached or refuses the password is a {@linkcode RuntimeError}
 * naming the URL with its password masked.
 */
export async function connectRoomSeam(
  script: string,
  redis: RedisFlags,
  log: (line: string) => void,
): Promise<import("./room.ts").RoomSeam> {
  const { connectRedisSeam } = await import("./redis_seam.ts");
  try {
    return await connectRedisSeam({ ...redis, log });
  } catch (error) {
    throw new RuntimeError(`${script}: ${errorText(error)}`);
  }
}

/** Where and how a server listens, from its flags. */
export interface ListenOptions {
  host: string;
  port: number;
  mode: Mode;
  /**
   * `--reuse-port`: share the port with other processes that set it too
   * (SO_REUSEPORT; Linux spreads new connections over them, socket(7)).
   */
  reusePort: boolean;
}

/**
 * Parses `--host`, `--port`, `--mode` and `--reuse-port`; throws a
 * {@linkcode UsageError} for a bad one.
 */
export function parseListenFlags(
  flags: { host: string; port: string; mode: string; "reuse-port"?: boolean },
): ListenOptions {
  return {
    host: parseHost(flags.host),
    port: parsePort(flags.port),
    mode: parseChoice("--mode", flags.mode, ["chat", "echo"] as const),
    reusePort: flags["reuse-port"] ?? false,
  };
}

/**
 * Starts a server with `start` (given the console log to write to, which
 * stamps every line with the time) and runs it with {@linkcode serve} until
 * it shuts down; a port in use or a missing permission becomes a
 * {@linkcode RuntimeError}. Resolves with the exit code.
 */
export async function runServer(
  script: string,
  transport: "tcp" | "tls" | "udp",
  listen: ListenOptions,
  start: (log: (line: string) => void) => ConsoleServer | Promise<ConsoleServer>,
  options: ServeOptions = {},
): Promise<number> {
  const log = consoleLog(Deno.stdout, { clock: Date.now });
  const where = {
    transport: transport === "udp" ? "udp" : "tcp",
    hostname: listen.host,
    port: listen.port,
  } as const;
  const server = await withNetErrors(
    script,
    `cannot listen on ${formatAddress(where)}`,
    () => start(log.line),
  );
  return await serve(server, `${transport}, ${listen.mode}`, log, options);
}

/** The largest file a flag may name (a certificate chain, a key, a password file). */
export const MAX_FLAG_FILE_BYTES = 1024 * 1024;

/**
 * Reads the text file a flag names (a certificate, a key, a password file).
 * Every failure is a {@linkcode RuntimeError} of one line: no permission
 * (naming the `--allow-read=PATH` that grants it, or `grant` when other
 * files must be read too), no such file, or what the
 * system said.
 */
export async function readFlagFile(
  script: string,
  flag: string,
  path: string,
  grant: string = path,
): Promise<string> {
  try {
    // A certificate, a key or a password is small; /dev/zero is endless.
    const info = await Deno.stat(path);
    if (!info.isFile) throw new RuntimeError(`${script}: cannot read ${flag} ${path}: not a file`);
    if (info.size > MAX_FLAG_FILE_BYTES) {
      throw new RuntimeError(
        `${script}: cannot read ${flag} ${path}: over ${MAX_FLAG_FILE_BYTES} bytes`,
      );
    }
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof RuntimeError) throw error;
    const why = error instanceof Deno.errors.NotCapable
      ? `no permission to read it: run it with --allow-read=${grant}`
      : error instanceof Deno.errors.NotFound
      ? "no such file"
      : errorText(error);
    throw new RuntimeError(`${script}: cannot read ${flag} ${path}: ${why}`);
  }
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
