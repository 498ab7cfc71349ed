/**
 * Test helpers for "who may join": TCP clients that send from a chosen
 * loopback address (127.0.0.2, 127.0.0.3...: every 127.0.0.0/8 address is
 * this machine's on Linux; udp_util.ts's TestPeer does the same for UDP), so
 * one test can play several hosts; and files made in a temporary folder for
 * --password-file.
 *
 * `Deno.connect` cannot choose its local address, so the TCP client is
 * node:net's socket with `localAddress` (a real bind() before connect()). The suite has no --allow-write,
 * so files are written by `sh` (as install_test.ts does with mktemp).
 *
 * @module
 */
import net from "node:net";
import { startUdpServer, type UdpServer, type UdpServerOptions } from "../udp_server.ts";
import { LineReader, WatchedLog } from "./util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes that arrive on a node:net socket, read the way `Deno.Conn` reads. */
class SocketSource {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #wake?: () => void;

  constructor(socket: net.Socket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
      this.#wake?.();
    });
    // A reset is an end too: the tests look at what came before it.
    const end = () => {
      this.#ended = true;
      this.#wake?.();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(buffer.length, chunk.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }
}

/** A TCP client connected from `from` (a loopback address) to a server. */
export class BoundClient {
  readonly socket: net.Socket;
  readonly lines: LineReader;
  readonly closed: Promise<void>;
  /** This end's port, which the server's log shows after the address (kept: it goes with the socket). */
  readonly localPort: number;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.localPort = socket.localPort!;
    this.lines = new LineReader(new SocketSource(socket));
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
    // The server's FIN is answered with ours at once, as a client that has nothing more to say.
    socket.on("end", () => socket.end());
  }

  /** Connects from `from` to `to`:`port`; resolves once the handshake is done. */
  static connect(from: string, port: number, to = "127.0.0.1"): Promise<BoundClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: to, port, localAddress: from });
      socket.once("connect", () => resolve(new BoundClient(socket)));
      socket.once("error", reject);
    });
  }

  send(text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(encoder.encode(text), (error) => error ? reject(error) : resolve());
    });
  }

  line(): Promise<string | null> {
    return this.lines.line();
  }

  until(match: string | RegExp): Promise<string> {
    return this.lines.until((line) =>
      typeof match === "string" ? line === match : match.test(line)
    );
  }

  /** Every line until the server closes (its FIN). */
  rest(): Promise<string[]> {
    return this.lines.rest();
  }

  [Symbol.dispose](): void {
    this.socket.destroy();
  }
}

/** Runs a program and fails with its stderr unless it exits 0. */
async function run(program: string, args: string[], input?: Uint8Array): Promise<string> {
  const child = new Deno.Command(program, {
    args,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
  }
  const output = await child.output();
  if (output.code !== 0) {
    throw new Error(`${program} ${args.join(" ")}: ${decoder.decode(output.stderr)}`);
  }
  return decoder.decode(output.stdout);
}

/** A temporary folder (`mktemp -d`), removed with everything in it on dispose. */
export class TempDir {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  static async make(): Promise<TempDir> {
    return new TempDir((await run("mktemp", ["-d", "-t", "netchat-access.XXXXXXXX"])).trim());
  }

  /** Writes `content` to `name` in the folder; returns the file's path. */
  async file(name: string, content: string | Uint8Array): Promise<string> {
    const path = `${this.path}/${name}`;
    const bytes = typeof content === "string" ? encoder.encode(content) : content;
    await run("sh", ["-c", 'cat > "$1"', "sh", path], bytes);
    return path;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await run("rm", ["-rf", "--", this.path]);
  }
}

/** Runs `body` with a UDP server on 127.0.0.1 (port 0) whose log it can wait on; shuts it down after. */
export async function withUdpServer(
  options: UdpServerOptions,
  body: (server: UdpServer, log: WatchedLog) => Promise<void>,
): Promise<void> {
  const log = new WatchedLog();
  const server = startUdpServer({ host: "127.0.0.1", port: 0, log: log.line, ...options });
  try {
    await body(server, log);
  } finally {
    await server.shutdown();
  }
}
