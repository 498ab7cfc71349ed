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
  readInputMessages,
  toDisplayText,
  writeAll,
} from "./line_buffer.ts";
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  EXIT_RUNTIME_ERROR,
  fail,
  formatAddress,
  parseFlags,
  parseHost,
  parseInteger,
  runMain,
  RuntimeError,
  standardInput,
  UsageError,
  withNetErrors,
} from "./cli.ts";
import { nameError, parseCommand } from "./protocol.ts";

// The first line of a netchat server that is full (protocol.ts, say.serverFull).
const SERVER_FULL = "ERR server full";

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
  --listen-only  send nothing (stdin is not read): stay and print the room
                 until the server closes
  --timestamps   print the local time (HH:MM:SS) before each line received
  --trace        print this side's TCP life cycle on stderr (handshake, FINs, close)
  --help         show this help`;

const encoder = new TextEncoder();
const NEWLINE = new Uint8Array([0x0a]);
/** The input of `--listen-only`: nothing, and no end. */
const NO_INPUT = { read: () => new Promise<number | null>(() => {}) };

/** Where the client writes; tests pass their own. */
export interface ClientIo {
  input: { read(buffer: Uint8Array): Promise<number | null> };
  /** Lines from the server, already made safe to print. */
  print(line: string): void | Promise<void>;
  /** Status lines: connected, closed, problems. */
  status(line: string): void;
  /** Each step of the connection's life cycle (`--trace`), or `undefined` for none. */
  trace?: (step: string) => void;
}

/**
 * Runs one session over an open connection; resolves with the exit code once
 * the server has closed.
 */
export async function runClient(
  conn: Deno.TcpConn,
  io: ClientIo,
  name?: string,
): Promise<number> {
  conn.setNoDelay(true);
  const trace = (step: string) => io.trace?.(`trace ${formatAddress(conn.remoteAddr)} ${step}`);
  // Handshake: connect() returned once SYN, SYN-ACK, ACK had completed.
  trace("connected (handshake done: SYN, SYN-ACK, ACK)");
  let weClosed = false;

  async function fromServer(): Promise<"eof" | "reset" | "output closed"> {
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
        if (linesShown++ === 0 && text.startsWith(SERVER_FULL)) turnedAway = true;
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
        if (error instanceof Deno.errors.ConnectionReset) return "reset";
        throw error;
      }
      if (n === null) {
        trace("FIN received (read returned EOF: the server sends no more)");
        // The server's FIN: it will send nothing more. A last line without its
        // "\n" is still shown, as nc shows it.
        if (framer.bufferedBytes > 0 && !await show(framer.push(NEWLINE))) return "output closed";
        return "eof";
      }
      if (!await show(framer.push(buffer.subarray(0, n)))) return "output closed";
    }
  }

  async function toServer(): Promise<void> {
    try {
      if (name !== undefined) {
        await writeAll(conn, encoder.encode(`/nick ${name.normalize("NFC")}\n`));
      }
      // A line too long for one message is sent as text in every piece: no
      // piece of it can run as a command.
      const input = readInputMessages(io.input, MAX_MESSAGE_BYTES, { piecesAsText: true });
      for await (const message of input) {
        await writeAll(conn, joinLine(message));
        if (parseCommand(decodeUtf8(message))?.name === "/quit") break;
      }
      // Close, step 1: our FIN. Half-close, so the server's last lines still arrive.
      weClosed = true;
      await conn.closeWrite();
      trace("FIN sent (closeWrite: no more data from the client)");
    } catch (error) {
      // The server went away while we were sending: fromServer() reports how.
      if (
        !(error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.NotConnected)
      ) {
        throw error;
      }
    }
  }

  let done = false;
  let turnedAway = false;
  const sending = toServer().catch((error) => {
    // Input that cannot be read ends the client at once, in one line.
    if (error instanceof RuntimeError) fail(error.message);
    // Once the connection is closed, a send still waiting for input has nowhere to go.
    if (!done) throw error;
  });
  try {
    const ending = await fromServer();
    if (ending === "output closed") return 0;
    if (ending === "reset") {
      io.status("connection reset by server");
      return EXIT_RUNTIME_ERROR;
    }
    if (weClosed) {
      await sending;
    } else {
      io.status("connection closed by server");
    }
    return turnedAway ? EXIT_RUNTIME_ERROR : 0;
  } finally {
    done = true;
    // Both FINs have been exchanged (or the connection was reset): free the socket.
    conn.close();
    trace("closed (socket released)");
  }
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
    "listen-only": { type: "boolean", default: false },
    trace: { type: "boolean", default: false },
    timestamps: { type: "boolean", default: false },
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

  const conn = await withNetErrors(
    "client.ts",
    `cannot connect to ${formatAddress({ transport: "tcp", hostname: host, port })}`,
    // Handshake: connect() returns once SYN, SYN-ACK, ACK have completed.
    () => Deno.connect({ hostname: host, port, transport: "tcp" }),
  );
  console.error(
    `connected to ${formatAddress(conn.remoteAddr)} from ${formatAddress(conn.localAddr)}`,
  );

  const stdout = Deno.stdout;
  // Local time as HH:MM:SS, the first eight characters of toTimeString().
  const stamp = flags.timestamps ? () => new Date().toTimeString().slice(0, 8) + " " : () => "";
  return await runClient(conn, {
    // Listening only: an input that never ends, so no FIN is sent before the server's.
    input: flags["listen-only"] ? NO_INPUT : standardInput("client.ts"),
    print: (line) => writeAll(stdout, encoder.encode(stamp() + line + "\n")),
    status: (line) => console.error(line),
    trace: flags.trace ? (line) => console.error(line) : undefined,
  }, flags.name);
}

if (import.meta.main) runMain("client.ts", () => main(Deno.args));
