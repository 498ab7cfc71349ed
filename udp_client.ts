#!/usr/bin/env -S deno run --allow-net
/**
 * netchat UDP client: sends each line as one datagram to a netchat UDP server
 * (or any UDP service) and prints what the server sends back.
 *
 * UDP has no connection, so there is nothing to open or close: the client
 * binds its own port and trades datagrams with one address, ignoring any
 * other sender. At the end of piped input it keeps printing until --wait ms
 * pass in silence, as `nc -u -q` does. With --expect-reply it is honest about
 * loss: stop-and-wait, each datagram resent until answered or out of retries,
 * and a count of what was lost at the end.
 *
 *   deno run --allow-net udp_client.ts --name alice
 *   seq 1 200 | deno run --allow-net udp_client.ts --port 9091 --expect-reply
 *
 * @module
 */
import { lookup } from "node:dns/promises";
import {
  decodeUtf8,
  MAX_INCOMING_LINE_BYTES,
  readInputMessages,
  toDisplayText,
} from "./line_buffer.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  describeNetError,
  EXIT_RUNTIME_ERROR,
  formatAddress,
  parseFlags,
  parseInteger,
  runMain,
  RuntimeError,
  UsageError,
  withNetErrors,
} from "./cli.ts";
import { nameError } from "./protocol.ts";

const USAGE = `Usage: deno run --allow-net udp_client.ts [options]

Sends each line you type (or pipe) as one datagram to a netchat UDP server
or any UDP service, and prints what that address sends back; datagrams from
anybody else are ignored. /quit sends /quit and exits.

Options:
  --host HOST      server address (default ${DEFAULT_HOST})
  --port PORT      server port (default ${DEFAULT_PORT})
  --name NAME      take this name first (sends /nick NAME)
  --wait MS        after the input ends, print replies until MS ms pass in silence
                   (default 1000)
  --expect-reply   stop-and-wait: every datagram must be answered (echo servers);
                   prints "sent N, answered M, lost K" on stderr, exits 1 on any loss
  --timeout MS     with --expect-reply: wait this long for each answer (default 1000)
  --retries N      with --expect-reply: resend an unanswered datagram up to N times
                   (default 3)
  --help           show this help`;

export const DEFAULT_WAIT_MS = 1000;
export const DEFAULT_TIMEOUT_MS = 1000;
export const DEFAULT_RETRIES = 3;
// Bounds for the flags: a minute of waiting, a hundred resends.
const MAX_WAIT_MS = 600_000;
const MAX_RETRIES = 100;
// Big enough for any UDP datagram: a smaller buffer would cut one silently.
const RECEIVE_BUFFER_SIZE = 65_535;
const QUIT = "/quit";
const encoder = new TextEncoder();

export interface UdpClientOptions {
  /** The server's address: an IP, as replies are told apart by their source. */
  server: Deno.NetAddr;
  name?: string;
  waitMs?: number;
  /** Stop-and-wait with retries, and a loss count at the end. */
  expectReply?: { timeoutMs: number; retries: number };
  /** A person at a terminal: /quit exits at once instead of waiting for replies. */
  interactive?: boolean;
}

/** Where the client reads and writes; tests pass their own. */
export interface UdpClientIo {
  input: { read(buffer: Uint8Array): Promise<number | null> };
  /** Lines from the server, already made safe to print. */
  print(line: string): void | Promise<void>;
  /** Status lines: the summary, problems. */
  status(line: string): void;
}

/** Is `from` the server? Only its datagrams are shown, so nobody else can inject text. */
function isFrom(from: Deno.NetAddr, server: Deno.NetAddr): boolean {
  return from.hostname === server.hostname && from.port === server.port;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The lines of one datagram from the server, made safe to print. */
export function displayLines(datagram: Uint8Array): string[] {
  const lines: string[] = [];
  let start = 0;
  while (start < datagram.length) {
    let end = datagram.indexOf(0x0a, start);
    if (end === -1) end = datagram.length;
    lines.push(toDisplayText(datagram.subarray(start, end)));
    start = end + 1;
  }
  // An empty datagram (or a lone "\n") is an empty line: echo servers send those back.
  return lines.length > 0 ? lines : [""];
}

/**
 * Runs one session on a bound socket; resolves with the exit code. Closes
 * the socket at the end.
 */
export async function runUdpClient(
  socket: Deno.DatagramConn,
  options: UdpClientOptions,
  io: UdpClientIo,
): Promise<number> {
  const server = options.server;
  const serverAddress = formatAddress(server);
  const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
  const expect = options.expectReply;
  let closed = false;
  let warnedStranger = false;
  let unmatched = 0;
  /** The request waiting for its answer (stop-and-wait: at most one). */
  let outstanding: { bytes: Uint8Array; answered: PromiseWithResolvers<void> } | undefined;
  /** Called on every datagram from the server, to restart the silence timer. */
  let onServerDatagram = () => {};

  async function fromServer(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      let datagram: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [bytes, source] = await socket.receive(buffer);
        datagram = bytes;
        from = source as Deno.NetAddr;
      } catch (error) {
        if (closed) return;
        // An ICMP error for an earlier datagram can surface here; UDP goes on regardless.
        if (error instanceof Deno.errors.ConnectionRefused) continue;
        throw error;
      }
      if (!isFrom(from, server)) {
        if (!warnedStranger) {
          io.status(
            `udp_client.ts: ignoring datagrams from ${formatAddress(from)} (not the server)`,
          );
          warnedStranger = true;
        }
        continue;
      }
      onServerDatagram();
      if (datagram.length > MAX_INCOMING_LINE_BYTES) {
        io.status(
          `udp_client.ts: dropped a datagram over ${MAX_INCOMING_LINE_BYTES} bytes from the server`,
        );
        continue;
      }
      if (expect !== undefined) {
        // Only the answer to the outstanding request counts; a late or duplicate one does not.
        if (outstanding === undefined || !equalBytes(datagram, outstanding.bytes)) {
          unmatched++;
          continue;
        }
        outstanding.answered.resolve();
        outstanding = undefined;
      }
      for (const line of displayLines(datagram)) await io.print(line);
    }
  }

  /** Sends one datagram; a send error is reported as a status line, not thrown. */
  async function send(bytes: Uint8Array): Promise<boolean> {
    try {
      await socket.send(bytes, server);
      return true;
    } catch (error) {
      const action = `udp_client.ts: cannot send to ${serverAddress}`;
      const message = describeNetError("udp_client.ts", error, action);
      if (message === undefined) throw error;
      io.status(message);
      return false;
    }
  }

  /** Stop-and-wait: resolves true once `bytes` is answered, false after the last try. */
  async function request(bytes: Uint8Array, timeoutMs: number, tries: number): Promise<boolean> {
    for (let attempt = 1; attempt <= tries; attempt++) {
      const waiting = { bytes, answered: Promise.withResolvers<void>() };
      outstanding = waiting;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const sent = await send(bytes);
      const answered = sent &&
        await Promise.race([waiting.answered.promise.then(() => true), timedOut]);
      clearTimeout(timer);
      if (answered) return true;
      outstanding = undefined;
    }
    return false;
  }

  /** Resolves once `waitMs` pass without a datagram from the server. */
  function silence(): Promise<void> {
    return new Promise((resolve) => {
      let timer = setTimeout(resolve, waitMs);
      onServerDatagram = () => {
        clearTimeout(timer);
        timer = setTimeout(resolve, waitMs);
      };
    });
  }

  const receiving = fromServer();
  let code = 0;
  try {
    const messages = async function* () {
      if (options.name !== undefined) yield encoder.encode(`/nick ${options.name}`);
      yield* readInputMessages(io.input);
    };
    let sent = 0;
    let answered = 0;
    let quit = false;
    for await (const message of messages()) {
      // A datagram is one line: the "\n" is optional for the server, but nc and friends like it.
      const line = new Uint8Array(message.length + 1);
      line.set(message);
      line[message.length] = 0x0a;
      quit = decodeUtf8(message) === QUIT;
      if (expect === undefined) {
        await send(line);
      } else {
        sent++;
        const tries = expect.retries + 1;
        if (await request(line, expect.timeoutMs, tries)) {
          answered++;
        } else if (answered === 0) {
          // Not one answer yet: most likely nothing is listening, so do not try every line.
          io.status(`no reply from ${serverAddress} after ${tries} tries`);
          return EXIT_RUNTIME_ERROR;
        }
      }
      if (quit) break;
    }
    if (expect !== undefined) {
      if (unmatched > 0) {
        io.status(`ignored ${unmatched} replies that matched no outstanding request`);
      }
      io.status(`sent ${sent}, answered ${answered}, lost ${sent - answered}`);
      code = sent === answered ? 0 : EXIT_RUNTIME_ERROR;
    } else if (!(quit && options.interactive)) {
      // No close to wait for: what the server still sends arrives in the next moments, or never.
      await silence();
    }
  } finally {
    closed = true;
    socket.close();
    await receiving.catch(() => {});
  }
  return code;
}

/** Where to bind: the loopback the server is on, or every interface of its family. */
function localHostFor(server: Deno.NetAddr): string {
  if (server.hostname.startsWith("127.")) return "127.0.0.1";
  if (server.hostname === "::1") return "::1";
  return server.hostname.includes(":") ? "::" : "0.0.0.0";
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    host: { type: "string", default: DEFAULT_HOST },
    port: { type: "string", default: String(DEFAULT_PORT) },
    name: { type: "string" },
    wait: { type: "string", default: String(DEFAULT_WAIT_MS) },
    "expect-reply": { type: "boolean", default: false },
    timeout: { type: "string" },
    retries: { type: "string" },
    help: { type: "boolean", default: false },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  // Port 0 means "any" only when binding; a datagram cannot be sent to it.
  const port = parseInteger("--port", flags.port, 1, 65535);
  if (flags.name !== undefined && nameError(flags.name) !== undefined) {
    throw new UsageError(`Cannot use --name "${flags.name}": ${nameError(flags.name)!.slice(4)}`);
  }
  if (!flags["expect-reply"]) {
    if (flags.timeout !== undefined) throw new UsageError("--timeout needs --expect-reply");
    if (flags.retries !== undefined) throw new UsageError("--retries needs --expect-reply");
  } else if (flags.name !== undefined) {
    throw new UsageError("--name cannot be used with --expect-reply (/nick would be a request)");
  }
  const options: UdpClientOptions = {
    server: { transport: "udp", hostname: flags.host, port },
    name: flags.name,
    waitMs: parseInteger("--wait", flags.wait, 0, MAX_WAIT_MS),
    expectReply: flags["expect-reply"]
      ? {
        timeoutMs: parseInteger(
          "--timeout",
          flags.timeout ?? String(DEFAULT_TIMEOUT_MS),
          1,
          MAX_WAIT_MS,
        ),
        retries: parseInteger(
          "--retries",
          flags.retries ?? String(DEFAULT_RETRIES),
          0,
          MAX_RETRIES,
        ),
      }
      : undefined,
    interactive: Deno.stdin.isTerminal(),
  };

  // Replies are recognised by their source, so the server's name must become its address.
  const address = await lookup(flags.host).then((found) => found.address, () => undefined);
  if (address === undefined) {
    throw new RuntimeError(`udp_client.ts: cannot send to ${flags.host}:${port}: unknown host`);
  }
  const server: Deno.NetAddr = { transport: "udp", hostname: address, port };
  options.server = server;
  // No connect for UDP: bind our own port (0: any) and name the server on every send.
  const socket = await withNetErrors(
    "udp_client.ts",
    `cannot send to ${flags.host}:${port}`,
    () => Deno.listenDatagram({ transport: "udp", hostname: localHostFor(server), port: 0 }),
  );
  if (options.interactive) {
    console.error(
      `sending to ${formatAddress(options.server)} from ${formatAddress(socket.addr)} (udp)`,
    );
  }
  return await runUdpClient(socket, options, {
    input: Deno.stdin,
    print: (line) => console.log(line),
    status: (line) => console.error(line),
  });
}

if (import.meta.main) runMain("udp_client.ts", () => main(Deno.args));
