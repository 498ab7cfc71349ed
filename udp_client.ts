#!/usr/bin/env -S deno run --allow-net
/**
 * netchat UDP client: sends each line as one datagram to a netchat UDP server
 * (or any UDP service) and prints what the server sends back.
 *
 * UDP has no connection, so there is nothing to open or close: the client
 * binds its own port and trades datagrams with one address, ignoring any
 * other sender. At the end of piped input it keeps printing until --wait ms
 * pass in silence, as `nc -u -q` does, but never longer than a few times that
 * in all: a busy room is never silent. At a terminal (or with --join) it is a
 * member of the chat room for as long as it runs: it joins at once, keeps the
 * membership alive with empty datagrams, and leaves with /quit on Ctrl-C or at
 * the end of the input, then prints the last replies until the room's
 * `* bye`. With
 * --expect-reply it is honest about loss: stop-and-wait, each datagram resent
 * until answered or out of retries, and a count of what was lost at the end.
 *
 *   deno run --allow-net udp_client.ts --name alice
 *   seq 1 200 | deno run --allow-net udp_client.ts --port 9091 --expect-reply
 *
 * @module
 */
import { lookup } from "node:dns/promises";
import { decodeUtf8, MAX_MESSAGE_BYTES, readInputMessages, toDisplayText } from "./line_buffer.ts";
import {
  canonicalHost,
  DEFAULT_HOST,
  DEFAULT_PORT,
  describeNetError,
  errorText,
  EXIT_INTERRUPTED,
  EXIT_RUNTIME_ERROR,
  formatAddress,
  parseFlags,
  parseHost,
  parseInteger,
  parseSeconds,
  runMain,
  RuntimeError,
  standardInput,
  UsageError,
  withNetErrors,
} from "./cli.ts";
import { nameError, ownNameFrom, parseCommand, say } from "./protocol.ts";

const USAGE = `Usage: deno run --allow-net udp_client.ts [options]

Sends each line you type (or pipe) as one datagram to a netchat UDP server
or any UDP service, and prints what that address sends back; datagrams from
anybody else are ignored. /quit sends /quit and exits.

At a terminal the client joins the chat room at once, keeps its membership
alive and sends /quit on Ctrl-C; --join does the same for piped input.

Options:
  --host HOST      server name or address (default ${DEFAULT_HOST}); IPv6 bare or in
                   brackets (::1 or [::1]), link-local with its zone (fe80::1%eth0)
  --port PORT      server port (default ${DEFAULT_PORT})
  --name NAME      take this name first (sends /nick NAME)
  --wait MS        after the input ends, print replies until MS ms pass in silence,
                   or 3 x MS in all, whichever comes first (default 1000)
  --join           be a member of the chat room while running: join at once (an empty
                   datagram, or /nick NAME with --name), say so if nothing answers in
                   3 s, keep the membership alive, send /quit on Ctrl-C (exit 130) and
                   when the input ends (then print replies until the room's "* bye",
                   or as --wait says); on by itself when the input is a terminal
  --keepalive S    when joined, send an empty datagram every S seconds so the room does
                   not forget a silent reader; fractions allowed, 0 for never
                   (default 60)
  --expect-reply   stop-and-wait: every datagram must be answered (an echo server or
                   any service that answers each one, not the chat room); each goes
                   from a port of its own, so a late answer is not taken for the next
                   one; prints "sent N, answered M, lost K" on stderr, exits 1 on loss
  --timeout MS     with --expect-reply: wait this long for each answer (default 1000)
  --retries N      with --expect-reply: resend an unanswered datagram up to N times
                   (default 3)
  --help           show this help

Exit status: 0, or 1 when a datagram could not be sent (each failure is shown)
or, with --expect-reply, went unanswered; 2 for a bad option; 130 after Ctrl-C
when joined.`;

export const DEFAULT_WAIT_MS = 1000;
/**
 * The whole wait for the last replies, in --wait periods: each datagram
 * restarts the silence, so in a busy room only this bound ends it.
 */
export const LAST_REPLIES_WAITS = 3;
export const DEFAULT_TIMEOUT_MS = 1000;
export const DEFAULT_RETRIES = 3;
/**
 * A fifth of the server's default --peer-timeout (300 s): four keepalives in a
 * row can be lost before the room forgets a silent reader.
 */
export const DEFAULT_KEEPALIVE_S = 60;
/** How long a joining client waits for any answer before it says nothing answered. */
export const DEFAULT_ANSWER_WAIT_MS = 3000;
// Bounds for the flags: ten minutes of waiting, a hundred resends.
const MAX_WAIT_MS = 600_000;
const MAX_RETRIES = 100;
// Big enough for any UDP datagram: a smaller buffer would cut one silently.
const RECEIVE_BUFFER_SIZE = 65_535;
/** The room's lines that end a membership it did not ask to end (protocol.ts). */
const GOODBYES = new Set([say.kicked, say.idle, say.shuttingDown]);
// After a receive error other than the one our own close() causes, a pause
// before the next receive, so a socket that keeps failing cannot spin the CPU.
const RECEIVE_ERROR_PAUSE_MS = 10;
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
  /**
   * Be a member of the chat room for the whole session (a terminal, or
   * --join; ignored with `expectReply`). The first datagram is the join: empty,
   * or `/nick NAME` with `name`. Then an empty datagram every `keepaliveMs`
   * (0: none), and `/quit` when the session ends. If nothing at all comes back
   * within `answerWaitMs` (default 3000) of the join, one status line says so.
   */
  join?: { keepaliveMs: number; answerWaitMs?: number };
  /** Ctrl-C: when it aborts, the client sends `/quit` and resolves with 130 at once. */
  interrupt?: AbortSignal;
}

/** Where the client reads and writes; tests pass their own. */
export interface UdpClientIo {
  /** Standard input (lines, cut into messages here), or the messages typed at a prompt (terminal.ts). */
  input: { read(buffer: Uint8Array): Promise<number | null> } | {
    next(): Promise<Uint8Array | null>;
  };
  /** Lines from the server, already made safe to print. */
  print(line: string): void | Promise<void>;
  /** Status lines: the summary, problems. */
  status(line: string): void;
}

/**
 * Is `source` the server? Only its datagrams are shown, so nobody else can
 * inject text. The zone is left out of the comparison: Deno reports a sender
 * without one (`fe80::1`, never `fe80::1%lo`) and gives no scope id to compare
 * instead, so a link-local server is matched by its address and port.
 */
function isServer(source: Deno.NetAddr, server: Deno.NetAddr): boolean {
  const host = (addr: Deno.NetAddr) => canonicalIp(addr.hostname).replace(/%.*$/, "");
  return source.port === server.port && host(source) === host(server);
}

/**
 * One spelling per address, so replies can be matched to the server by their
 * source: {@linkcode canonicalHost}'s (IPv6 in its shortest form with its
 * zone, an IPv4-mapped address as IPv4), and the "any" addresses as the
 * loopback a datagram sent to them reaches (its answer comes from there).
 */
export function canonicalIp(ip: string): string {
  const host = canonicalHost(ip);
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "::1";
  return host;
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
 * Runs one session; resolves with the exit code: 0, or 1 when a send failed
 * (or, with --expect-reply, a request went unanswered), 130 after `interrupt`.
 * `socket` is bound already; with --expect-reply every request after the
 * first goes from a new socket bound like it (`openSocket`). Closes every
 * socket it used.
 */
export async function runUdpClient(
  socket: Deno.DatagramConn,
  options: UdpClientOptions,
  io: UdpClientIo,
  openSocket: () => Deno.DatagramConn = () =>
    Deno.listenDatagram({
      transport: "udp",
      hostname: (socket.addr as Deno.NetAddr).hostname,
      port: 0,
    }),
): Promise<number> {
  const server = options.server;
  const serverAddress = formatAddress(server);
  const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
  const expect = options.expectReply;
  /** Sockets this session has closed: a receive failing on one of them is no error. */
  const closedByUs = new WeakSet<Deno.DatagramConn>();
  let warnedStranger = false;
  let warnedReceive = false;
  /** A send failed: its line was printed, and the session ends with EXIT_RUNTIME_ERROR. */
  let sendFailed = false;

  /** Waits for the next datagram from the server on `conn`; undefined once we closed it. */
  async function receiveFromServer(conn: Deno.DatagramConn, buffer: Uint8Array) {
    while (true) {
      let datagram: Uint8Array;
      let source: Deno.NetAddr;
      try {
        const [bytes, address] = await conn.receive(buffer);
        datagram = bytes;
        source = address as Deno.NetAddr;
      } catch (error) {
        if (closedByUs.has(conn)) return undefined;
        // An ICMP error for an earlier datagram can surface here (as a refused
        // or reset connection, depending on the system); UDP goes on regardless.
        if (!warnedReceive && !(error instanceof Deno.errors.ConnectionRefused)) {
          io.status(`udp_client.ts: receive failed, going on: ${errorText(error)}`);
          warnedReceive = true;
        }
        await new Promise((resolve) => setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS));
        continue;
      }
      if (isServer(source, server)) return datagram;
      if (!warnedStranger) {
        io.status(
          `udp_client.ts: ignoring datagrams from ${formatAddress(source)} (not the server)`,
        );
        warnedStranger = true;
      }
    }
  }

  async function printDatagram(datagram: Uint8Array): Promise<void> {
    for (const line of displayLines(datagram)) await io.print(line);
  }

  function close(conn: Deno.DatagramConn): void {
    if (closedByUs.has(conn)) return;
    closedByUs.add(conn);
    conn.close();
  }

  /** Sends one datagram; a send error is reported as a status line, not thrown. */
  async function send(conn: Deno.DatagramConn, bytes: Uint8Array): Promise<boolean> {
    try {
      await conn.send(bytes, server);
      return true;
    } catch (error) {
      const action = `udp_client.ts: cannot send to ${serverAddress}`;
      const message = describeNetError("udp_client.ts", error, action);
      if (message === undefined) throw error;
      io.status(message);
      sendFailed = true;
      return false;
    }
  }

  /**
   * Stop-and-wait on a socket of the request's own: the first datagram from
   * the server there answers it, whichever try it answers. Resolves with the
   * answer, or undefined after the last try.
   */
  async function request(
    conn: Deno.DatagramConn,
    bytes: Uint8Array,
    timeoutMs: number,
    tries: number,
  ): Promise<Uint8Array | undefined> {
    const answer = receiveFromServer(conn, new Uint8Array(RECEIVE_BUFFER_SIZE));
    for (let attempt = 1; attempt <= tries; attempt++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      });
      // A failed send waits out its timeout too, so the tries stay spaced.
      const result = (await send(conn, bytes))
        ? await Promise.race([answer, timedOut])
        : await timedOut;
      clearTimeout(timer);
      if (result !== undefined) return result;
    }
    return undefined;
  }

  const join = expect === undefined ? options.join : undefined;
  const nick = options.name === undefined
    ? undefined
    : encoder.encode(`/nick ${options.name.normalize("NFC")}`);
  const messages = async function* () {
    // A joining client sends the /nick as its join: the room then announces the name once.
    if (nick !== undefined && join === undefined) yield nick;
    // A line too long for one datagram is sent as text in every piece: no
    // piece of it can run as a command.
    const input = io.input;
    if ("next" in input) {
      // A prompt has cut typed lines into messages already.
      for (let message = await input.next(); message !== null; message = await input.next()) {
        yield message;
      }
      return;
    }
    yield* readInputMessages(input, MAX_MESSAGE_BYTES, { piecesAsText: true });
  };

  /** A datagram is one line: the "\n" is optional for the server, but nc and friends like it. */
  function asLine(message: Uint8Array): Uint8Array {
    const line = new Uint8Array(message.length + 1);
    line.set(message);
    line[message.length] = 0x0a;
    return line;
  }

  const isQuit = (message: Uint8Array) => parseCommand(decodeUtf8(message))?.name === "/quit";

  if (expect !== undefined) {
    let current = socket;
    let sent = 0;
    let answered = 0;
    try {
      for await (const message of messages()) {
        // A port of its own for each request, bound before the last one is
        // closed so it cannot be the same port: whatever still arrives for the
        // last request (late, duplicated) goes to a closed port, not to this one.
        if (sent > 0) {
          const next = await withNetErrors("udp_client.ts", "cannot open a socket", openSocket);
          close(current);
          current = next;
        }
        sent++;
        const tries = expect.retries + 1;
        const answer = await request(current, asLine(message), expect.timeoutMs, tries);
        if (answer !== undefined && answered === 0 && isChatWelcome(answer)) {
          // A netchat chat room keeps state per address: each request would
          // join it as a new peer. Leave it, and say why.
          await send(current, encoder.encode("/quit\n"));
          io.status(
            `udp_client.ts: ${serverAddress} is a netchat chat room, where each request would ` +
              `join as a new peer: use --expect-reply with echo-like services`,
          );
          return EXIT_RUNTIME_ERROR;
        }
        if (answer !== undefined) {
          answered++;
          await printDatagram(answer);
        } else if (answered === 0) {
          // Not one answer yet: most likely nothing is listening, so do not try every line.
          io.status(
            `no reply from ${serverAddress} after ${tries} ${tries === 1 ? "try" : "tries"}`,
          );
          return EXIT_RUNTIME_ERROR;
        }
        if (isQuit(message)) break;
      }
    } finally {
      close(current);
    }
    io.status(`sent ${sent}, answered ${answered}, lost ${sent - answered}`);
    return sent === answered ? 0 : EXIT_RUNTIME_ERROR;
  }

  let noAnswer: ReturnType<typeof setTimeout> | undefined;
  let keepalive: ReturnType<typeof setInterval> | undefined;
  let keepaliveSent = Promise.resolve(true);
  let silenceTimer: ReturnType<typeof setTimeout> | undefined;
  let lastRepliesTimer: ReturnType<typeof setTimeout> | undefined;
  let quitSent = false;
  let stopped = false;

  /** Told each line the server sends, once printed (see `lastReplies`). */
  let onServerDatagram = (_line: string) => {};
  // A member's goodbye from the room (kicked, timed out, shutdown): the
  // keepalive would only make it a newcomer again, under another name.
  const dismissed = Promise.withResolvers<string>();
  const receiving = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      const datagram = await receiveFromServer(socket, buffer);
      if (datagram === undefined) return;
      clearTimeout(noAnswer);
      // An echo service sends our empty join and keepalives back: they answer
      // the join, but show nothing and do not put off the end of a --wait
      // (the chat room never sends an empty datagram).
      if (join !== undefined && datagram.length === 0) continue;
      await printDatagram(datagram);
      const line = decodeUtf8(datagram).replace(/\r?\n$/, "");
      if (join !== undefined && GOODBYES.has(line)) dismissed.resolve(line);
      onServerDatagram(line);
    }
  })();

  /**
   * The last replies, once the input is done: resolves when `waitMs` pass
   * without a datagram from the server, when the room answers our /quit with
   * `* bye` (nothing more will come), or LAST_REPLIES_WAITS times `waitMs`
   * after it began, whichever is first. Each datagram restarts the silence,
   * so in a room where someone talks every few hundred ms only the bound
   * ends it.
   */
  function lastReplies(): Promise<void> {
    return new Promise((resolve) => {
      const end = () => {
        clearTimeout(silenceTimer);
        clearTimeout(lastRepliesTimer);
        resolve();
      };
      silenceTimer = setTimeout(end, waitMs);
      lastRepliesTimer = setTimeout(end, waitMs * LAST_REPLIES_WAITS);
      onServerDatagram = (line) => {
        clearTimeout(silenceTimer);
        if (quitSent && line === say.bye) return end();
        silenceTimer = setTimeout(end, waitMs);
      };
    });
  }

  /**
   * Sends /quit, the keepalive stopped first: after a /quit an empty
   * datagram would make us a newcomer again.
   */
  async function sendQuit(line: Uint8Array = asLine(encoder.encode("/quit"))): Promise<void> {
    clearInterval(keepalive);
    await keepaliveSent;
    quitSent = true;
    await send(socket, line);
  }

  /**
   * Sends the input; then a member leaves with /quit, and the replies are
   * printed (`lastReplies`) unless a person typed /quit.
   */
  async function converse(): Promise<void> {
    for await (const message of messages()) {
      if (stopped) return;
      if (isQuit(message)) {
        await sendQuit(asLine(message));
        if (options.interactive) return;
        break;
      }
      await send(socket, asLine(message));
    }
    if (stopped) return;
    // The end of the input ends a membership: /quit goes first, so the room's
    // "* bye" can end the wait even where the room's lines never stop.
    if (join !== undefined && !quitSent) await sendQuit();
    // No close to wait for: what the server still sends arrives in the next moments, or never.
    await lastReplies();
  }

  const interrupted = new Promise<true>((resolve) => {
    if (options.interrupt?.aborted) resolve(true);
    options.interrupt?.addEventListener("abort", () => resolve(true), { once: true });
  });

  try {
    if (join !== undefined) {
      const waitMs = join.answerWaitMs ?? DEFAULT_ANSWER_WAIT_MS;
      // Set before the join goes out, so an answer that comes at once clears it.
      noAnswer = setTimeout(() => {
        io.status(
          `udp_client.ts: no answer from ${serverAddress} in ${waitMs / 1000} s ` +
            `(is a netchat UDP server listening there?)`,
        );
      }, waitMs);
      // The join: the room takes a first good datagram as one, and relays nothing for an empty one.
      await send(socket, nick === undefined ? new Uint8Array() : asLine(nick));
      if (join.keepaliveMs > 0) {
        // Any datagram counts as activity for the room; an empty one says nothing.
        keepalive = setInterval(() => {
          keepaliveSent = send(socket, new Uint8Array());
        }, join.keepaliveMs);
      }
    }
    // On Ctrl-C a read of the input in progress cannot be cancelled: it is left
    // behind (the process exits under it), and `stopped` keeps it from sending.
    const ending = await Promise.race([
      converse().then(() => "input" as const),
      interrupted.then(() => "interrupted" as const),
      dismissed.promise.then(() => "dismissed" as const),
    ]);
    const wasInterrupted = ending === "interrupted";
    stopped = true;
    clearInterval(keepalive);
    await keepaliveSent;
    if (ending === "dismissed") {
      io.status("udp_client.ts: the server ended our membership: not joining again");
      return 0;
    }
    // A client that joined by itself leaves by itself, and Ctrl-C leaves too:
    // otherwise the room lists the peer until its timeout.
    if (!quitSent && (wasInterrupted || join !== undefined)) await sendQuit();
    if (wasInterrupted) return EXIT_INTERRUPTED;
    // UDP goes on after a failed send (the next may pass), but what failed did not arrive.
    return sendFailed ? EXIT_RUNTIME_ERROR : 0;
  } finally {
    stopped = true;
    clearInterval(keepalive);
    clearTimeout(noAnswer);
    clearTimeout(silenceTimer);
    clearTimeout(lastRepliesTimer);
    close(socket);
    await receiving.catch(() => {});
  }
}

/** Where to bind: the loopback the server is on, or every interface of its family. */
function localHostFor(server: Deno.NetAddr): string {
  if (server.hostname.startsWith("127.")) return "127.0.0.1";
  if (server.hostname === "::1") return "::1";
  return server.hostname.includes(":") ? "::" : "0.0.0.0";
}

/** Is `datagram` a netchat chat room's welcome (protocol.ts, say.welcome)? */
function isChatWelcome(datagram: Uint8Array): boolean {
  return decodeUtf8(datagram).startsWith(CHAT_WELCOME);
}
const CHAT_WELCOME = say.welcome("\0").slice(0, say.welcome("\0").indexOf("\0"));

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    host: { type: "string", default: DEFAULT_HOST },
    port: { type: "string", default: String(DEFAULT_PORT) },
    name: { type: "string" },
    wait: { type: "string", default: String(DEFAULT_WAIT_MS) },
    join: { type: "boolean", default: false },
    keepalive: { type: "string" },
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
  const host = parseHost(flags.host);
  const port = parseInteger("--port", flags.port, 1, 65535);
  if (flags.name !== undefined && nameError(flags.name) !== undefined) {
    throw new UsageError(`Cannot use --name "${flags.name}": ${nameError(flags.name)!.slice(4)}`);
  }
  if (!flags["expect-reply"]) {
    if (flags.timeout !== undefined) throw new UsageError("--timeout needs --expect-reply");
    if (flags.retries !== undefined) throw new UsageError("--retries needs --expect-reply");
  } else if (flags.name !== undefined) {
    throw new UsageError("--name cannot be used with --expect-reply (/nick would be a request)");
  } else if (flags.join) {
    throw new UsageError("--join cannot be used with --expect-reply (each request is a new peer)");
  } else if (flags.keepalive !== undefined) {
    throw new UsageError("--keepalive cannot be used with --expect-reply");
  }
  const interactive = Deno.stdin.isTerminal();
  // A person at a terminal is a member for as long as the client runs; a pipe, only if asked.
  const joining = flags.join || (interactive && !flags["expect-reply"]);
  if (!joining && flags.keepalive !== undefined) {
    throw new UsageError("--keepalive needs --join when the input is not a terminal");
  }
  const keepaliveS = parseSeconds(
    "--keepalive",
    flags.keepalive ?? String(DEFAULT_KEEPALIVE_S),
    "never",
  );
  const options: UdpClientOptions = {
    server: { transport: "udp", hostname: host, port },
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
    interactive,
    join: joining ? { keepaliveMs: keepaliveS * 1000 } : undefined,
  };

  // Replies are recognised by their source, so the server's name must become its address.
  const named: Deno.NetAddr = { transport: "udp", hostname: host, port };
  const address = await lookup(host).then((found) => found.address, () => undefined);
  if (address === undefined) {
    throw new RuntimeError(`udp_client.ts: cannot send to ${formatAddress(named)}: unknown host`);
  }
  const server: Deno.NetAddr = { transport: "udp", hostname: canonicalIp(address), port };
  options.server = server;
  // No connect for UDP: bind our own port (0: any) and name the server on every send.
  const socket = await withNetErrors(
    "udp_client.ts",
    `cannot send to ${formatAddress(named)}`,
    () => Deno.listenDatagram({ transport: "udp", hostname: localHostFor(server), port: 0 }),
  );
  if (options.interactive) {
    console.error(
      `sending to ${formatAddress(options.server)} from ${formatAddress(socket.addr)} (udp)`,
    );
  }
  // Ctrl-C leaves the room with /quit; without a membership it stops the client as always.
  const interrupt = new AbortController();
  const onInterrupt = () => {
    // The terminal echoed ^C with no line end: the next line starts on its own.
    if (Deno.stdin.isTerminal()) console.error();
    interrupt.abort();
  };
  if (joining) {
    options.interrupt = interrupt.signal;
    Deno.addSignalListener("SIGINT", onInterrupt);
  }
  let io: UdpClientIo = {
    input: standardInput("udp_client.ts"),
    print: (line) => console.log(line),
    status: (line) => console.error(line),
  };
  // Typing at a terminal: the same prompt as client.ts (line editing, history,
  // the room's lines above what is being typed, our own as the room shows them).
  let prompt: import("./terminal.ts").Prompt | undefined;
  if (joining && interactive && Deno.stdout.isTerminal()) {
    const { asTheRoomShows, Prompt } = await import("./terminal.ts");
    let name: string | undefined;
    const shown = Prompt.onTerminal({
      typed: (line, messages) => {
        if (parseCommand(line)?.name === "/quit") queueMicrotask(() => shown.close());
        return asTheRoomShows(name, messages);
      },
      // Raw mode: Ctrl-C is a key, not a signal. It leaves the room, as SIGINT does.
      interrupted: () => {
        shown.close();
        interrupt.abort();
      },
    });
    prompt = shown;
    io = {
      input: shown,
      print: (line) => {
        const named = ownNameFrom(line, name);
        if (named !== undefined && named !== name) shown.name = name = named;
        shown.print(line);
      },
      status: (line) => shown.status(line),
    };
  }
  try {
    return await runUdpClient(socket, options, io);
  } finally {
    prompt?.close();
    if (joining) Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

if (import.meta.main) runMain("udp_client.ts", () => main(Deno.args));
