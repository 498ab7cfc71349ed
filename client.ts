#!/usr/bin/env -S deno run --allow-net
/**
 * netchat TCP client: talks to a netchat server, or any line-based TCP
 * service, in both directions at once.
 *
 * Lines from stdin go to the server (a long line as several messages of at
 * most 254 bytes, each sent as text, cut between grapheme clusters); lines
 * from the server are printed as they arrive, with escape sequences and
 * control characters removed so no server can drive the terminal. At the end
 * of stdin, or on /quit, the client half-closes (sends its FIN) and prints
 * what the server still sends until the server closes too, like `nc -N`.
 *
 *   deno run --allow-net client.ts --name alice
 *   printf 'hi\n' | deno run --allow-net client.ts --port 9091
 *
 * @module
 */
import {
  decodeUtf8,
  type Frame,
  LINE_TOO_LONG,
  LineFramer,
  MAX_INCOMING_LINE_BYTES,
  MAX_MESSAGE_BYTES,
  READ_BUFFER_SIZE,
  type Reader,
  readInputMessages,
  toDisplayText,
  writeAll,
} from "./line_buffer.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  describeNetError,
  errorText,
  EXIT_INTERRUPTED,
  EXIT_RUNTIME_ERROR,
  fail,
  formatAddress,
  parseFlags,
  parseHost,
  parseInteger,
  readFlagFile,
  runMain,
  RuntimeError,
  standardInput,
  UsageError,
  withNetErrors,
} from "./cli.ts";
import {
  HOLE,
  linePrefix,
  MAX_PASSWORD_TRIES,
  nameError,
  ownNameFrom,
  parseCommand,
  PASS_COMMAND,
  say,
} from "./protocol.ts";
import type { Prompt } from "./terminal.ts";

// The first line of a netchat server that turns a client away: full, or not
// for its address. Recognised by the fixed text of protocol.ts's own lines.
const TURNED_AWAY = [
  linePrefix(say.serverFull),
  linePrefix(say.notAllowed),
  linePrefix(say.tooManyFromAddress(HOLE, 0, "client")),
];
// Lines after which coming back would only be refused again: --reconnect stops.
const FOR_GOOD = [say.notAllowed, say.lockedOut].map(linePrefix);
const LAST_WRONG_PASSWORD = say.lastWrongPassword(MAX_PASSWORD_TRIES, "closing");

const USAGE = `Usage: deno run --allow-net client.ts [options]

Connects to a netchat server (or any line-based TCP service): lines you type
are sent, lines from the server are printed. /quit or end of input closes
the connection (after the server's last lines have been printed).

A line from the server may be up to ${MAX_INCOMING_LINE_BYTES} bytes (64 KiB); a longer one
is dropped with a note on stderr. Terminal escape sequences and control
characters are removed before a line is printed.

Options:
  --host HOST    server address (default ${DEFAULT_HOST})
  --port PORT    server port (default ${DEFAULT_PORT})
  --name NAME    take this name on connecting (sends /nick NAME)
  --password-file FILE  give the room's password, FILE's first line, on connecting
                 (sends /pass PASSWORD before anything else; needs --allow-read=FILE)
  --listen-only  send nothing (stdin is not read): stay and print the room
                 until the server closes
  --timestamps   print the local time (HH:MM:SS) before each line received
  --reconnect    when the server goes away, connect again (waits of 0.5 s doubling
                 up to 30 s) and take the same name again; ends with your input
  --tls          speak TLS; the server's certificate is checked for HOST (or
                 --servername) against the system's CAs and --ca
  --ca FILE      also trust this CA certificate, or self-signed certificate (PEM;
                 needs --allow-read=FILE)
  --servername NAME  check the certificate for NAME rather than HOST
  --trace        print this side's TCP life cycle on stderr (handshake, FINs, close)
  --help         show this help

In a terminal: a prompt with line editing and Up/Down history; the room's
lines appear above what you are typing, and your own lines as the room shows
them. Ctrl-D or /quit leaves; Ctrl-C leaves too, and twice quits at once.

Exit status: 0 when you or the server closed the connection, 1 when it could
not be made or the server turned you away (full, or not from your address),
2 for a bad option, 3 when the connection was lost (reset by the server, or
timed out).`;

const encoder = new TextEncoder();
const NEWLINE = new Uint8Array([0x0a]);
/** The input of `--listen-only`: nothing, and no end. */
const NO_INPUT: MessageSource = { next: () => new Promise<null>(() => {}) };

/** How long, after our FIN, the server has to send its own, in ms (it gives us 2 s). */
export const FIN_WAIT_MS = 5000;
/** Exit code: the connection was lost (reset, timed out) rather than closed by a FIN. */
export const EXIT_CONNECTION_LOST = 3;
/** `--reconnect`: the first wait, and the longest, in milliseconds. */
export const RECONNECT_FIRST_MS = 500;
export const RECONNECT_MAX_MS = 30_000;
/** A session at least this long (ms) was a real one: the next reconnect waits little again. */
const RECONNECT_STEADY_MS = 10_000;

/** Messages to send, in order: each at most 255 bytes, without its "\n"; `null` when input has ended. */
export interface MessageSource {
  next(): Promise<Uint8Array | null>;
}

/** Where the client reads and writes; tests pass their own. */
export interface ClientIo {
  /** Standard input (lines, cut into messages here), or the messages typed at a prompt. */
  input: Reader | MessageSource;
  /** Lines from the server, already made safe to print. */
  print(line: string): void | Promise<void>;
  /** Status lines: connected, closed, problems. */
  status(line: string): void;
  /** Each step of the connection's life cycle (`--trace`), or `undefined` for none. */
  trace?: (step: string) => void;
  /** The server told us our name (welcome, rename): a prompt can show it. */
  named?: (name: string) => void;
  /** How long to wait for the server's FIN after ours, in ms (default {@linkcode FIN_WAIT_MS}). */
  finWaitMs?: number;
}

/**
 * How a session ended: `done` (we closed first, the server closed after),
 * `closed` (the server closed first, with its FIN), `lost` (reset or failed:
 * the server vanished), `refused` (the server speaks TLS, and we do not),
 * or `output closed` (nobody reads our output).
 */
export type Ending =
  | { kind: "done" | "closed"; turnedAway: boolean; final: boolean }
  | { kind: "refused"; reason: string }
  | { kind: "lost"; reason: string }
  | { kind: "output closed" };

/** What the client keeps from one connection to the next (`--reconnect`). */
export interface ClientState {
  /** The name the server last told us. */
  name?: string;
  /** A name we chose (`--name`, or `/nick` granted): taken again on reconnecting. */
  chosen?: string;
  /** The room's password (`--password-file`): given first on every connection. */
  password?: string;
}

/**
 * The messages waiting to go out, read one ahead at most. A message read
 * when the connection failed stays here and is sent on the next connection
 * (`--reconnect`): input is never read and then dropped.
 */
export class Outgoing {
  #source: MessageSource;
  #next?: Promise<Uint8Array | null>;
  #ended = Promise.withResolvers<void>();

  constructor(input: Reader | MessageSource) {
    this.#source = "next" in input ? input : messagesOf(input);
  }

  /** The next message, read if need be, kept until {@linkcode taken}. */
  peek(): Promise<Uint8Array | null> {
    this.#next ??= this.#source.next().then((message) => {
      if (message === null) this.#ended.resolve();
      return message;
    });
    return this.#next;
  }

  /** The message from {@linkcode peek} has been sent. */
  taken(): void {
    this.#next = undefined;
  }

  /** Resolves when input has ended. */
  get ended(): Promise<void> {
    return this.#ended.promise;
  }
}

/** Standard input cut into messages: a line too long for one is sent as text in every piece. */
function messagesOf(reader: Reader): MessageSource {
  const messages = readInputMessages(reader, MAX_MESSAGE_BYTES, { piecesAsText: true });
  return { next: async () => (await messages.next()).value ?? null };
}

/**
 * Runs one session over an open connection: sends the messages in `outgoing`
 * (after `/nick` for a chosen name) while printing what the server sends,
 * and resolves once the server has closed or the connection is lost.
 */
export async function runSession(
  conn: ClientConn,
  io: ClientIo,
  outgoing: Outgoing,
  state: ClientState,
): Promise<Ending> {
  conn.setNoDelay?.(true);
  // A server that vanishes without a FIN or a reset is noticed when we send,
  // or by TCP keepalive (the system's interval) when we only listen.
  conn.setKeepAlive?.(true);
  const trace = (step: string) => io.trace?.(`trace ${formatAddress(conn.remoteAddr)} ${step}`);
  // Handshake: connect() returned once SYN, SYN-ACK, ACK had completed.
  trace("connected (handshake done: SYN, SYN-ACK, ACK)");
  let weClosed = false;
  let turnedAway = false;
  // Kicked, or refused in a way a new connection would be too: --reconnect stops.
  let final = false;

  async function fromServer(): Promise<Ending> {
    // Any line-based service's lines, up to 64 KiB: the framer never holds more
    // of an unfinished line, and reports a longer one once it ends.
    const framer = new LineFramer(MAX_INCOMING_LINE_BYTES);
    const buffer = new Uint8Array(READ_BUFFER_SIZE);
    let linesShown = 0;
    async function show(frames: Frame[]): Promise<boolean> {
      for (const frame of frames) {
        if (frame === LINE_TOO_LONG) {
          io.status(
            `client.ts: dropped a line over ${MAX_INCOMING_LINE_BYTES} bytes from the server`,
          );
          continue;
        }
        const text = toDisplayText(frame);
        // A netchat server that turns us away says so first, then closes.
        if (linesShown++ === 0 && TURNED_AWAY.some((start) => text.startsWith(start))) {
          turnedAway = true;
        }
        if (
          text === say.kicked || text === LAST_WRONG_PASSWORD ||
          FOR_GOOD.some((start) => text.startsWith(start))
        ) {
          final = true;
        }
        const name = ownNameFrom(text, state.name);
        if (name !== undefined && name !== state.name) {
          state.name = name;
          if (nameError(name) === undefined) state.chosen = name;
          io.named?.(name);
        }
        try {
          await io.print(text);
        } catch (error) {
          // Whoever read our output is gone (| head): nothing more can be shown.
          if (error instanceof Deno.errors.BrokenPipe) return false;
          throw error;
        }
      }
      return true;
    }
    while (true) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch (error) {
        if (finOverdue) {
          return {
            kind: "lost",
            reason: `no FIN and no data from the server for ${finWaitMs / 1000} s after ours`,
          };
        }
        // A TLS server that closes without close_notify (ncat does): an ordinary end.
        if (!(error instanceof Deno.errors.UnexpectedEof)) {
          // No FIN: a reset (the server's process or host is gone), or a timeout.
          const reset = error instanceof Deno.errors.ConnectionReset;
          return { kind: "lost", reason: reset ? "reset by the server" : errorText(error) };
        }
        n = null;
      }
      if (linesShown === 0 && framer.bufferedBytes === 0 && n !== null && isTlsAlert(buffer, n)) {
        return { kind: "refused", reason: "the server speaks TLS: connect with --tls" };
      }
      if (n === null) {
        trace("FIN received (read returned EOF: the server sends no more)");
        // The server's FIN: it will send nothing more. A last line without its
        // "\n" is still shown, as nc shows it.
        if (framer.bufferedBytes > 0 && !await show(framer.push(NEWLINE))) {
          return { kind: "output closed" };
        }
        return { kind: weClosed ? "done" : "closed", turnedAway, final };
      }
      // After our FIN, a server still sending is not hanging: its 5 s start again.
      if (finTimer !== undefined) armFinTimer();
      if (!await show(framer.push(buffer.subarray(0, n)))) return { kind: "output closed" };
    }
  }

  async function toServer(): Promise<void> {
    try {
      // The password goes before anything else: until the server has it, it takes nothing else.
      if (state.password !== undefined) {
        await writeAll(conn, encoder.encode(`${PASS_COMMAND} ${state.password}\n`));
      }
      if (state.chosen !== undefined) {
        await writeAll(conn, encoder.encode(`/nick ${state.chosen.normalize("NFC")}\n`));
      }
      while (true) {
        const message = await outgoing.peek();
        // A session that has ended leaves the message to the next one (--reconnect).
        if (ended) return;
        if (message === null) break;
        await writeAll(conn, joinLine(message));
        outgoing.taken();
        if (parseCommand(decodeUtf8(message))?.name === "/quit") break;
      }
      // Close, step 1: our FIN. Half-close, so the server's last lines still arrive.
      weClosed = true;
      await conn.closeWrite();
      trace("FIN sent (closeWrite: no more data from the client)");
      armFinTimer();
    } catch (error) {
      // Input that cannot be read ends the client at once, in one line.
      if (error instanceof RuntimeError) fail(error.message);
      // The server went away while we were sending: fromServer() reports how.
      if (!Object.values(Deno.errors).some((kind) => error instanceof kind)) throw error;
    }
  }

  let ended = false;
  let finTimer: ReturnType<typeof setTimeout> | undefined;
  let finOverdue = false;
  // The server's FIN should follow ours (it waits 2 s for it); a server that
  // sends nothing for finWaitMs after it must not hang us.
  function armFinTimer(): void {
    clearTimeout(finTimer);
    finTimer = setTimeout(() => {
      finOverdue = true;
      conn.close();
    }, finWaitMs);
  }
  const finWaitMs = io.finWaitMs ?? FIN_WAIT_MS;
  const sending = toServer();
  try {
    const ending = await fromServer();
    // After our FIN, the server's: the send side has finished.
    if (ending.kind === "done") await sending;
    return ending;
  } finally {
    ended = true;
    clearTimeout(finTimer);
    // Both FINs have been exchanged (or the connection was lost): free the socket.
    if (!finOverdue) conn.close();
    trace("closed (socket released)");
  }
}

/** The status line for how a session ended, if it needs one. */
function describeEnding(ending: Ending): string | undefined {
  if (ending.kind === "closed") return "connection closed by server";
  if (ending.kind === "lost") return `connection lost: ${ending.reason}`;
  if (ending.kind === "refused") return ending.reason;
  return undefined;
}

/**
 * The exit code for how the client ended: 0 when we or the server closed
 * cleanly, 1 when a full server turned us away, {@linkcode EXIT_CONNECTION_LOST}
 * when the connection was lost.
 */
export function exitCode(ending: Ending): number {
  if (ending.kind === "lost") return EXIT_CONNECTION_LOST;
  if (ending.kind === "refused") return EXIT_RUNTIME_ERROR;
  if ((ending.kind === "closed" || ending.kind === "done") && ending.turnedAway) {
    return EXIT_RUNTIME_ERROR;
  }
  return 0;
}

/**
 * Runs one session over an open connection (see {@linkcode runSession}),
 * says how it ended, and resolves with the exit code.
 */
export async function runClient(
  conn: ClientConn,
  io: ClientIo,
  name?: string,
): Promise<number> {
  const ending = await runSession(conn, io, new Outgoing(io.input), { chosen: name });
  const note = describeEnding(ending);
  if (note !== undefined) io.status(note);
  return exitCode(ending);
}

/**
 * `--reconnect`'s wait before attempt `attempt` (0, 1, ...), in milliseconds:
 * doubling from {@linkcode RECONNECT_FIRST_MS} up to
 * {@linkcode RECONNECT_MAX_MS}, each a random time between half of that and
 * all of it ("equal jitter"), so clients cut off together do not all come
 * back in the same instant.
 */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/**
 * After a session the server ended, connects again with backoff until it
 * works (resolves with the connection) or input ends (resolves `undefined`).
 * `backoff.attempt` counts on from earlier reconnects (the caller resets
 * it after a session that lasted). Says each step on stderr.
 */
async function reconnect(
  target: Target,
  io: ClientIo,
  outgoing: Outgoing,
  why: string,
  backoff: { attempt: number },
): Promise<ClientConn | undefined> {
  const ended = outgoing.ended.then(() => true);
  outgoing.peek(); // a read of input is under way, so its end is seen
  while (true) {
    const delay = reconnectDelay(backoff.attempt++);
    io.status(`${why}; reconnecting in ${(delay / 1000).toFixed(1)} s (--reconnect)`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<boolean>((resolve) => timer = setTimeout(resolve, delay, false));
    const stop = await Promise.race([waited, ended]);
    clearTimeout(timer);
    if (stop) {
      io.status("input ended: not reconnecting");
      return undefined;
    }
    try {
      // Handshake again: SYN, SYN-ACK, ACK (and TLS's).
      const conn = await connectTo(target);
      io.status(
        `reconnected to ${formatAddress(conn.remoteAddr)} from ${formatAddress(conn.localAddr)}${
          secured(target)
        }`,
      );
      return conn;
    } catch (error) {
      why = error instanceof RuntimeError
        ? `reconnect failed: ${error.message.replace(/^client\.ts: /, "")}`
        : describeNetError("client.ts", error, "reconnect failed") ??
          `reconnect failed: ${errorText(error)}`;
    }
  }
}

/** A connection to the server: TCP, or TLS over TCP (no no-delay or keepalive to set). */
export type ClientConn = Deno.Conn & {
  setNoDelay?(noDelay?: boolean): void;
  setKeepAlive?(keepAlive?: boolean): void;
};

/** Where to connect, and with `tls` how to check the server (`--tls`, `--ca`, `--servername`). */
export interface Target {
  hostname: string;
  port: number;
  tls?: { caCerts?: string[]; serverName: string };
}

/**
 * Connects to `target` (TCP's handshake) and, for TLS, runs TLS's handshake
 * over the connection and checks the server's certificate for
 * `tls.serverName`. Resolves only once both are done: Deno would otherwise
 * report a bad certificate at the first read or write. A TLS failure is a
 * {@linkcode RuntimeError} of one line ({@linkcode describeTlsError});
 * network failures are thrown as `Deno.connect` throws them.
 */
export async function connectTo(target: Target): Promise<ClientConn> {
  const tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
  if (target.tls === undefined) return tcp;
  const address = formatAddress(tcp.remoteAddr);
  // TLS over the TCP connection: ClientHello, the server's certificate, Finished (RFC 8446, 2).
  const conn = await Deno.startTls(tcp, {
    hostname: target.tls.serverName,
    caCerts: target.tls.caCerts,
  });
  try {
    await conn.handshake();
  } catch (error) {
    conn.close();
    const why = describeTlsError(error, target.tls.serverName);
    throw new RuntimeError(`client.ts: TLS handshake with ${address} failed: ${why}`);
  }
  // Deno 2.9.6's TlsConn from startTls() does not know its addresses: the TCP connection's are its.
  return Object.defineProperties(conn, {
    remoteAddr: { value: tcp.remoteAddr },
    localAddr: { value: tcp.localAddr },
  });
}

/**
 * What a failed TLS handshake means, in one line, from Deno's (rustls's)
 * message: an unknown issuer, a certificate for other names, a CA
 * certificate used as a server's, a refused signature algorithm (SHA-1), an
 * expired certificate, or a server that does not speak TLS.
 */
export function describeTlsError(error: unknown, serverName: string): string {
  const message = errorText(error);
  if (/UnknownIssuer/.test(message)) {
    return "the server's certificate is not signed by a CA this client trusts " +
      "(give the CA, or a self-signed certificate itself, with --ca FILE)";
  }
  const names = /only valid for (.*)$/.exec(message)?.[1];
  if (/not valid for name/.test(message)) {
    const valid = names === undefined
      ? ""
      : ` (it is for ${
        names.replace(/(DnsName|IpAddress)\(([^)]*)\)/g, "$2").replace(/"/g, "")
          // rustls writes ::1 as 0::1
          .replace(/\b0::/g, "::")
      })`;
    return `the server's certificate is not for ${serverName}${valid}; ` +
      "--servername NAME checks it for another name";
  }
  if (/CaUsedAsEndEntity/.test(message)) {
    return "the server's certificate is a CA certificate (CA:TRUE), which cannot serve as a " +
      "server's own: make one with CA:FALSE (deno task cert does)";
  }
  if (/UnsupportedSignatureAlgorithm/.test(message)) {
    return "the server's certificate is signed with an algorithm this client refuses (SHA-1?): " +
      "make one signed with SHA-256";
  }
  if (/Expired/i.test(message)) return "the server's certificate has expired";
  if (/NotValidYet/i.test(message)) return "the server's certificate is not valid yet";
  if (/InvalidContentType|corrupt message/.test(message)) {
    return "the server did not answer in TLS (a plain port? connect without --tls)";
  }
  if (error instanceof Deno.errors.UnexpectedEof || error instanceof Deno.errors.ConnectionReset) {
    return "the server closed the connection during the handshake (is it full?)";
  }
  return message;
}

/** What the connected lines add for TLS: how the server's certificate was checked. */
function secured(target: Target): string {
  return target.tls ? ` (TLS, certificate checked for ${target.tls.serverName})` : "";
}

/**
 * Whether the first bytes from a server are a TLS alert record (type 21,
 * version 3.x: RFC 8446, section 5.1): what a TLS server answers a client
 * that spoke plain text to it.
 */
function isTlsAlert(bytes: Uint8Array, length: number): boolean {
  return length >= 5 && bytes[0] === 0x15 && bytes[1] === 0x03 && bytes[2] <= 0x04;
}

function joinLine(message: Uint8Array): Uint8Array {
  const line = new Uint8Array(message.length + 1);
  line.set(message);
  line.set(NEWLINE, message.length);
  return line;
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    host: { type: "string", default: DEFAULT_HOST },
    port: { type: "string", default: String(DEFAULT_PORT) },
    name: { type: "string" },
    "password-file": { type: "string" },
    "listen-only": { type: "boolean", default: false },
    reconnect: { type: "boolean", default: false },
    trace: { type: "boolean", default: false },
    timestamps: { type: "boolean", default: false },
    tls: { type: "boolean", default: false },
    ca: { type: "string" },
    servername: { type: "string" },
    help: { type: "boolean", default: false },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const host = parseHost(flags.host);
  // Port 0 means "any" only when listening; nothing can be connected to it.
  const port = parseInteger("--port", flags.port, 1, 65535);
  if (flags.name !== undefined && nameError(flags.name) !== undefined) {
    throw new UsageError(`Cannot use --name "${flags.name}": ${nameError(flags.name)!.slice(4)}`);
  }

  if (!flags.tls && (flags.ca !== undefined || flags.servername !== undefined)) {
    throw new UsageError("--ca and --servername need --tls");
  }
  // Loaded only here: a client without a password never loads auth.ts's node:crypto.
  const password = flags["password-file"] === undefined
    ? undefined
    : await (await import("./auth.ts")).readPasswordFile("client.ts", flags["password-file"]);
  const target: Target = { hostname: host, port };
  if (flags.tls) {
    const ca = flags.ca === undefined
      ? undefined
      : await readFlagFile("client.ts", "--ca", flags.ca);
    if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----")) {
      throw new RuntimeError(`client.ts: --ca ${flags.ca} holds no PEM certificate`);
    }
    target.tls = {
      caCerts: ca === undefined ? undefined : [ca],
      serverName: flags.servername ?? host,
    };
  }
  let conn = await withNetErrors(
    "client.ts",
    `cannot connect to ${formatAddress({ transport: "tcp", hostname: host, port })}`,
    // Handshake: connectTo() returns once SYN, SYN-ACK, ACK (and with --tls,
    // TLS's handshake) have completed.
    () => connectTo(target),
  );
  console.error(
    `connected to ${formatAddress(conn.remoteAddr)} from ${formatAddress(conn.localAddr)}${
      secured(target)
    }`,
  );

  // Local time as HH:MM:SS, the first eight characters of toTimeString().
  const stamp = flags.timestamps ? () => new Date().toTimeString().slice(0, 8) + " " : () => "";
  const state: ClientState = { chosen: flags.name, password };
  const stdout = Deno.stdout;
  let io: ClientIo = {
    // Listening only: an input that never ends, so no FIN is sent before the server's.
    input: flags["listen-only"] ? NO_INPUT : standardInput("client.ts"),
    print: (line) => writeAll(stdout, encoder.encode(stamp() + line + "\n")),
    status: (line) => console.error(line),
    trace: flags.trace ? (line) => console.error(line) : undefined,
  };
  // Typing at a terminal: a prompt with line editing and history, and the
  // room's lines printed above it. Pipes and files are read as they are.
  let prompt: Prompt | undefined;
  if (!flags["listen-only"] && Deno.stdin.isTerminal() && stdout.isTerminal()) {
    // Loaded only here: piped runs need neither readline nor node:process (terminal.ts).
    const { asTheRoomShows, Prompt } = await import("./terminal.ts");
    let interrupts = 0;
    prompt = Prompt.onTerminal({
      typed: (line, messages) => {
        // After /quit nothing more is sent: the prompt goes, so nothing typed seems sent.
        if (parseCommand(line)?.name === "/quit") queueMicrotask(() => prompt!.close());
        return asTheRoomShows(state.name, messages).map((shown) => stamp() + shown);
      },
      interrupted: () => {
        // Ctrl-C leaves as Ctrl-D does (our FIN, then the server's last lines); twice, at once.
        if (interrupts++ > 0) fail("client.ts: interrupted", EXIT_INTERRUPTED);
        prompt!.status("leaving (Ctrl-C again to quit at once)");
        prompt!.close();
      },
    });
    const shown = prompt;
    io = {
      ...io,
      input: shown,
      print: (line) => shown.print(stamp() + line),
      status: (line) => shown.status(line),
      trace: flags.trace ? (line) => shown.status(line) : undefined,
      named: (name) => shown.name = name,
    };
  }

  const outgoing = new Outgoing(io.input);
  const backoff = { attempt: 0 };
  try {
    while (true) {
      const sessionStarted = performance.now();
      const ending = await runSession(conn, io, outgoing, state);
      const note = describeEnding(ending);
      const again = flags.reconnect && (ending.kind === "closed" || ending.kind === "lost") &&
        !(ending.kind === "closed" && ending.final);
      // The backoff starts over only after a session that lasted: a server
      // that accepts and at once closes is retried ever more slowly.
      if (performance.now() - sessionStarted >= RECONNECT_STEADY_MS) backoff.attempt = 0;
      if (!again) {
        if (note !== undefined) io.status(note);
        return exitCode(ending);
      }
      if (prompt) prompt.accepting = false;
      const next = await reconnect(target, io, outgoing, note!, backoff);
      if (next === undefined) return exitCode(ending);
      if (prompt) prompt.accepting = true;
      conn = next;
    }
  } finally {
    // Out of raw mode, whatever happened: the shell gets its terminal back.
    prompt?.close();
  }
}

if (import.meta.main) runMain("client.ts", () => main(Deno.args));
