#!/usr/bin/env -S deno run --allow-net
/**
 * netchat TCP server: a chat room (the default) or an echo service.
 *
 * The C tutorial it grew from served one client on 127.0.0.1:9090 and traded
 * 256-byte buffers with it until one side quit. This one serves many clients
 * at once, keeps a registry of them (like Redis's CLIENT LIST), and makes each
 * step of TCP's life cycle visible with --trace.
 *
 * Read top to bottom: the flags, the listen, the accept loop, then `Client`,
 * which wires one accepted connection to the room. The chat room itself is in
 * room.ts; the connection's queue, backpressure and close (both FINs) are in
 * connection.ts; telnet's in-band commands are taken out by telnet.ts.
 *
 *   deno run --allow-net server.ts                  chat room on 127.0.0.1:9090
 *   deno run --allow-net server.ts --mode echo      echo every line back
 *
 * @module
 */
import {
  decodeUtf8,
  encodeLine,
  type Frame,
  isValidUtf8,
  joinBytes,
  LINE_TOO_LONG,
  LineFramer,
} from "./line_buffer.ts";
import {
  connectRoomSeam,
  type ConsoleServer,
  DEFAULT_HOST,
  DEFAULT_PORT,
  errorText,
  type Mode,
  parseFlags,
  parseInteger,
  parseListenFlags,
  parseRedisFlags,
  parseSeconds,
  readFlagFile,
  REDIS_FLAGS,
  runMain,
  runServer,
  RuntimeError,
  SERVER_FLAGS,
  UsageError,
} from "./cli.ts";
import { isTlsClientHello, say } from "./protocol.ts";
import { hasTelnetBytes, TelnetFilter } from "./telnet.ts";
import { type Member, type MemberLink, Room, type RoomSeam } from "./room.ts";
import { AccessControl, type AccessOptions, parseAccessFlags } from "./access.ts";
import { lockoutLine, type Password, PasswordTries, readPasswordFlag } from "./auth.ts";
import {
  type ByteConn,
  CLOSE_GRACE_MS,
  Connection,
  type ConnectionHandler,
  type ConnectionSettings,
  isReset,
} from "./connection.ts";

const USAGE = `Usage: deno run --allow-net server.ts [options]

A TCP chat room (every line goes to every other client as "<name> text")
or echo service (every line comes back to its sender).

Options:
  --host HOST          address to listen on (default ${DEFAULT_HOST}: this machine only)
  --port PORT          port to listen on, 0 for any free port (default ${DEFAULT_PORT})
  --mode chat|echo     chat room or echo service (default chat)
  --reuse-port         share the port with other server.ts processes started with
                       --reuse-port, say one a core (Linux SO_REUSEPORT, same user): the
                       kernel spreads new connections over them. Each has its own room,
                       clients meet only those of the same process, unless they share
                       one over Redis (--redis)
  --max-clients N      clients at once; the next one gets "ERR server full" (default 1000)
  --idle-timeout S     close a client that sends no line for S seconds (fractions
                       allowed), 0 = never (default 0)
  --max-queue BYTES    output queued for one client before it is dropped as too slow
                       (default 1048576, at least 65536)
  --max-rate N         chat mode: lines a second one client may send, in bursts of up
                       to N; past it the server reads from that client more slowly
                       (nothing is lost), 0 = no limit (default 1000)
  --allow ADDR[/BITS]  only these may connect: an IPv4 or IPv6 address or CIDR range
                       (127.0.0.0/8, ::1, 2001:db8::/32); repeat it or join with commas.
                       An IPv4 client seen as ::ffff:a.b.c.d matches IPv4 rules
  --deny ADDR[/BITS]   these may not connect, even if --allow lists them
                       (as in ncat: deny wins). A refused client is told
                       "ERR not allowed from ADDRESS" and closed
  --max-per-address N  clients from one address at once, 0 = no limit (default 0)
  --password-file FILE chat mode: the room's password is FILE's first line (needs
                       --allow-read=FILE). A client sends /pass PASSWORD first and sees
                       nothing of the room until then; 3 wrong ones from one address
                       (an IPv6 /64), on any connections, lock it out for 60 s
  --trace              print each connection's TCP life cycle (handshake, FINs, close)
  --tls-cert FILE      speak TLS, with this certificate chain (PEM; needs --tls-key
                       and --allow-read for both files)
  --tls-key FILE       the certificate's private key (PEM)
  --redis URL          share the room with every server started with the same --redis
                       and --room, on this machine or others: redis://HOST:PORT, or
                       redis://:PASSWORD@HOST:PORT (the password is never logged)
  --room NAME          the shared room's name (default main)
  --no-console         do not read stdin: for running in the background (server.ts &)
  --help               show this help

Joins, leaves and renames are announced while the room has at most 100 clients.
Lines typed here go to every client as "<server> text". Console commands:
  /list   show the clients     /kick ID or NAME   disconnect one
  /quit   shut down            /help              all the console commands
Each log line begins with the time (ISO 8601, UTC).`;

export const DEFAULT_MAX_CLIENTS = 1000;
export const DEFAULT_MAX_QUEUE_BYTES = 1024 * 1024;
// Flood control: a client may send this many lines a second in chat mode (and
// a burst of as many at once). Each line goes to the whole room, so one client
// pasting faster than others can read would get them dropped as slow
// consumers; pacing its reads instead loses nothing and keeps the room usable.
export const DEFAULT_MAX_RATE = 1000;
// A client that reads must never be dropped for the answer to one of its own
// reads: an echo of 16 KiB, or a /list of about 900 clients, fits in this.
const MIN_MAX_QUEUE_BYTES = 64 * 1024;
// After an accept() failure that is not one client's doing (out of descriptors).
const ACCEPT_RETRY_MS = 100;

export interface ServerOptions {
  host?: string;
  port?: number;
  mode?: Mode;
  /**
   * Share the port with other listeners that set this too (SO_REUSEPORT; Deno
   * documents it for Linux). Linux spreads new connections over them by a hash
   * of the client's address and port, and lets only processes of the same
   * effective user join (socket(7)). Without it, a port in use is an error.
   */
  reusePort?: boolean;
  maxClients?: number;
  /** 0 means never. */
  idleTimeoutMs?: number;
  maxQueueBytes?: number;
  /** Chat lines a second per client (and burst); 0 means no limit. */
  maxRate?: number;
  trace?: boolean;
  /** Who may connect: --allow, --deny, --max-per-address (access.ts). */
  access?: AccessOptions;
  /** The room's password (chat mode only): clients wait until they give it. */
  password?: Password;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
  /**
   * Where the room's events pass (room.ts; default: this process alone). The
   * server closes it at the end of its shutdown (redis_seam.ts shares the room).
   */
  seam?: RoomSeam;
}

/** A certificate chain and its private key, PEM text, for {@linkcode startTlsServer}. */
export interface TlsOptions {
  cert: string;
  key: string;
  /** How long a client may take over its handshake (default HANDSHAKE_TIMEOUT_MS, 10 s). */
  handshakeTimeoutMs?: number;
}

/** What the server accepts connections from: `Deno.listen`'s listener, or TLS's (tls.ts). */
interface Listener {
  readonly addr: Deno.NetAddr;
  accept(): Promise<ByteConn>;
  close(): void;
}

/**
 * A running TCP server. `shutdown()` stops accepting, tells clients, waits up
 * to 2 s for their FINs and closes the rest.
 */
export interface Server extends ConsoleServer {
  addr: Deno.NetAddr;
  /** Clients in the room (open connections that have not left). */
  readonly clientCount: number;
  /** Connections not yet fully closed, in the room or not. */
  readonly connectionCount: number;
}

/** Starts a server: it is listening when this returns (Deno.listen binds at once). */
export function startServer(options: ServerOptions = {}): Server {
  // socket, bind, listen. The C original's backlog of 5 cannot be set: Deno uses 511.
  const listener = Deno.listen({
    hostname: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
    transport: "tcp",
    reusePort: options.reusePort ?? false,
  });
  return serveOn(listener, options);
}

/**
 * Starts a server that speaks TLS (tls.ts says why on node:tls): listening
 * when the promise resolves. A connection counts against `maxClients` from
 * its TCP handshake on, so stalled TLS handshakes cannot take every slot;
 * past the limit, or after `handshakeTimeoutMs`, it is closed and logged.
 * Rejects as {@linkcode startServer} throws, or with Node's error for a
 * certificate or key it cannot use.
 */
export async function startTlsServer(
  options: ServerOptions & { tls: TlsOptions },
): Promise<Server> {
  const log = options.log ?? ((line: string) => console.log(line));
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
  // Loaded only here: a plain server never loads node:tls.
  const { TlsListener } = await import("./tls.ts");
  const listener = await TlsListener.listen({
    hostname: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
    reusePort: options.reusePort ?? false,
    ...options.tls,
  }, {
    connected(address, open) {
      if (open <= maxClients) return true;
      log(`closed ${address} (server full, before the TLS handshake)`);
      return false;
    },
    failed: (address, reason) => log(`closed ${address} (${reason})`),
  });
  return serveOn(listener, { ...options, log });
}

/** Serves the connections `listener` accepts: the room (or echo), the accept loop, the shutdown. */
function serveOn(listener: Listener, options: ServerOptions): Server {
  const mode = options.mode ?? "chat";
  const maxRate = options.maxRate ?? DEFAULT_MAX_RATE;
  // Below one line a second the bucket could never hold a whole line.
  if (maxRate !== 0 && !(maxRate >= 1)) throw new RangeError("maxRate must be 0 or at least 1");
  const log = options.log ?? ((line: string) => console.log(line));
  // One table of wrong passwords for every connection: reconnecting starts nothing afresh.
  const passwordTries = options.password && new PasswordTries(options.password);
  const room = new Room({
    noun: "client",
    chat: mode === "chat",
    maxMembers: options.maxClients ?? DEFAULT_MAX_CLIENTS,
    idleTimeoutMs: options.idleTimeoutMs ?? 0,
    password: passwordTries,
    log,
    onQuit: () => shutdown(),
    seam: options.seam,
  });
  /** Every connection not yet released, in the room or not. */
  const clients = new Set<Client>();
  let shuttingDown = false;
  let shutdownStartedAt = 0;
  let closedWithoutFin = 0;
  let shutdownEnded = false;
  const finished = Promise.withResolvers<void>();
  const context: ClientContext = {
    room,
    access: new AccessControl(options.access ?? {}, "client"),
    passwordTries,
    mode,
    maxRate,
    log,
    settings: {
      maxQueueBytes: options.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES,
      trace: options.trace ? log : undefined,
    },
    released(client, finReceived) {
      clients.delete(client);
      if (!shuttingDown) return;
      if (!finReceived) closedWithoutFin++;
      if (clients.size === 0) endShutdown();
    },
  };

  async function acceptLoop(): Promise<void> {
    while (!shuttingDown) {
      let conn: ByteConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (shuttingDown || error instanceof Deno.errors.BadResource) return;
        // A client that reset before we accepted it (Deno says NotConnected when
        // the peer's address is already gone): nothing to serve, take the next one.
        if (isReset(error) || error instanceof Deno.errors.NotConnected) continue;
        // Out of descriptors, most likely: say so, and give closing connections a
        // moment to free some instead of spinning.
        log(`accept failed: ${errorText(error)} (is ulimit -n too low?)`);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (shuttingDown) { // accepted in the same turn as the shutdown began
        conn.close();
        return;
      }
      // Lines are small and interactive: send each at once (no Nagle).
      conn.setNoDelay?.(true);
      clients.add(new Client(conn, context));
    }
  }

  function shutdown(): Promise<void> {
    if (shuttingDown) return finished.promise;
    shuttingDown = true;
    shutdownStartedAt = performance.now();
    log("shutting down");
    listener.close(); // stop accepting: new connections are refused from here on
    room.shutdown(); // every client is told and its connection starts closing
    if (clients.size === 0) endShutdown();
    // The whole shutdown waits CLOSE_GRACE_MS at most for FINs, then closes the rest.
    const deadline = setTimeout(() => {
      for (const client of [...clients]) client.release(); // the last one ends the shutdown
    }, CLOSE_GRACE_MS);
    return finished.promise.then(() => clearTimeout(deadline));
  }

  /** The end of a shutdown, once every connection is closed: logged before the process may exit. */
  function endShutdown(): void {
    if (shutdownEnded) return;
    shutdownEnded = true;
    const ms = Math.round(performance.now() - shutdownStartedAt);
    const unanswered = closedWithoutFin > 0 ? `; ${closedWithoutFin} closed without their FIN` : "";
    log(`shut down in ${ms} ms${unanswered}`);
    // A shared room's seam takes its members' leaves to Redis before it closes.
    Promise.resolve(options.seam?.close?.()).finally(() => finished.resolve());
  }

  acceptLoop();
  return {
    addr: listener.addr,
    console: (line) => room.console(line),
    shutdown,
    finished: finished.promise,
    get shuttingDown() {
      return shuttingDown;
    },
    get clientCount() {
      return room.size;
    },
    get connectionCount() {
      return clients.size;
    },
  };
}

/** What every client of one server shares. */
interface ClientContext {
  room: Room;
  access: AccessControl;
  /** Wrong passwords by address (auth.ts), shared with the room; none without a password. */
  passwordTries?: PasswordTries;
  mode: Mode;
  maxRate: number;
  log: (line: string) => void;
  settings: ConnectionSettings;
  released(client: Client, finReceived: boolean): void;
}

/**
 * One TCP client: its connection (the transport) wired to the room, where it
 * is a member in both modes (so the console's /list and /kick, the client
 * limit and the idle timeout work for echo clients too). In chat mode its
 * lines go to the room; in echo mode they come back.
 */
class Client implements ConnectionHandler, MemberLink {
  readonly #context: ClientContext;
  readonly #connection: Connection;
  readonly #member?: Member;
  /** The client's IP address once it counts against --max-per-address (access.ts). */
  #counted?: string;
  /** Its IP address (MemberLink's `host`): wrong passwords count by it. */
  readonly host: string;
  /** Made on the client's first read: an idle client never needs one. */
  #framer?: LineFramer;
  /** Made when the client turns out to speak telnet. */
  #telnet?: TelnetFilter;
  /** Flood control: lines the client may still send now, as of `tokensAt`. */
  tokens: number;
  tokensAt: number;

  constructor(conn: ByteConn, context: ClientContext) {
    this.#context = context;
    this.tokens = context.maxRate;
    this.tokensAt = context.room.now();
    this.#connection = new Connection(conn, context.settings, this);
    // Who may connect (--allow, --deny, --max-per-address) is settled before the room sees it.
    const host = (conn.remoteAddr as Deno.NetAddr).hostname;
    this.host = host;
    // An address locked out for wrong passwords is refused before it can guess again.
    const lockout = context.passwordTries?.lockout(host);
    const refusal = context.access.refusal(host) ?? (lockout && lockoutLine(lockout));
    if (refusal !== undefined) {
      context.log(`refused ${this.address}: ${refusal.slice("ERR ".length)}`);
      this.#connection.writeNow(encodeLine(refusal));
      this.#connection.close();
      return;
    }
    context.access.take(host);
    this.#counted = host;
    this.#member = context.room.join(this);
    if (this.#member === undefined) {
      context.log(`closed ${this.address} (server full)`);
      this.#connection.close();
    } else {
      context.log(`connected ${this.address} id=${this.#member.id} ${this.#member.name}`);
    }
  }

  // ---- what the room asks of the client (MemberLink)

  get address(): string {
    return this.#connection.address;
  }

  /** Several lines for the room's members at once (Room.hearAll): one queue entry, one write. */
  deliverBlock(block: Uint8Array): void {
    this.#connection.send(block);
  }

  deliver(line: Uint8Array): void {
    // The first line, while the room is still taking the client in, is its
    // welcome (or "server full"): written at once, like an echo, rather than
    // through the queue's writer, so a burst of accepts makes less garbage.
    if (this.#member === undefined) this.#connection.writeNow(line);
    else this.#connection.send(line);
  }

  left(cause: string, notice: Uint8Array | undefined): void {
    const member = this.#member!;
    this.#context.log(
      `closed ${this.#connection.address} id=${member.id} ${member.name} (${cause})`,
    );
    // The shutdown notice goes ahead of whatever is still queued: in a busy
    // room a client could otherwise spend the whole 2 s of grace reading its
    // backlog and never learn why the server closed.
    this.#connection.close(notice, cause === "shutdown");
  }

  get paced(): boolean {
    return this.#connection.paused;
  }

  // ---- what the connection tells the client (ConnectionHandler)

  received(chunk: Uint8Array): void | Promise<void> {
    if (this.#framer === undefined && isTlsClientHello(chunk)) {
      // A TLS client on the plain port: its handshake is not chat text.
      this.#connection.send(encodeLine(say.notTls));
      return this.#context.room.leave(this.#member!, "TLS on the plain port");
    }
    const framer = this.#framer ??= new LineFramer();
    let block: Uint8Array | undefined;
    if (this.#context.mode === "echo" && this.#telnet === undefined) {
      // Echo's fast path: a block of good lines goes back in one write. Valid
      // UTF-8 with no "\r" holds no telnet command (no byte 255, no CR NUL),
      // so only what follows the block is looked at below.
      const end = framer.wholeLinesEnd(chunk, { utf8: true });
      // Most reads end with a line: the block is the chunk, and no views are made.
      if (end === chunk.length) {
        block = chunk;
        chunk = NO_BYTES;
      } else if (end > 0) {
        block = chunk.subarray(0, end);
        chunk = chunk.subarray(end);
      }
    }
    if (this.#telnet !== undefined || hasTelnetBytes(chunk)) {
      // A telnet client: its commands come out, its option requests are refused.
      this.#telnet ??= new TelnetFilter(framer.endsInCarriageReturn);
      const { data, reply } = this.#telnet.filter(chunk);
      if (reply !== undefined) this.#connection.send(reply);
      chunk = data;
    }
    if (block === undefined) return this.#handle(framer.push(chunk));
    this.#context.room.touch(this.#member!);
    const frames = chunk.length > 0 ? framer.push(chunk) : NO_FRAMES;
    this.#connection.echo(block);
    // Lines completed after the block (a CR NUL) are queued behind it.
    if (frames.length > 0) return this.#handle(frames);
  }

  endOfInput(): void | Promise<void> {
    // A last line without "\n" before the FIN is a line like the others.
    const last = this.#framer?.finish();
    if (last !== undefined) return this.#handle([last]);
  }

  ended(cause: string): void {
    if (cause === "slow consumer") {
      this.#context.log(
        `dropping ${this.#connection.address} id=${
          this.#member!.id
        }: output queue over ${this.#context.settings.maxQueueBytes} bytes (not reading fast enough)`,
      );
    }
    this.#context.room.leave(this.#member!, cause);
  }

  released(finReceived: boolean): void {
    if (this.#counted !== undefined) this.#context.access.release(this.#counted);
    this.#context.released(this, finReceived);
  }

  /** Closes the socket now, whatever is left (the end of a shutdown's grace). */
  release(): void {
    this.#connection.release();
  }

  /**
   * The complete lines of one read. Only complete lines count as hearing
   * from the client: bytes that trickle in without a line end do not keep it
   * from its idle timeout (the slowloris pattern).
   */
  #handle(frames: readonly Frame[]): void | Promise<void> {
    if (frames.length === 0) return;
    this.#context.room.touch(this.#member!);
    return this.#context.mode === "echo" ? this.#echo(frames) : this.#chat(frames);
  }

  // ---- chat: each good line to the room, paced by flood control

  /**
   * Handles the frames of one read. A client out of its line allowance is
   * paused before its next line: the returned promise settles when all are
   * handled, and its reading waits for that.
   */
  #chat(frames: readonly Frame[]): void | Promise<void> {
    const { room, maxRate } = this.#context;
    // Runs of good lines go to the room together (Room.hearAll); an error
    // line goes out after what the lines before it made the room send.
    let lines: string[] = [];
    for (let i = 0; i < frames.length; i++) {
      if (this.#connection.closing) return;
      const paced = maxRate > 0 && !takeToken(this, maxRate, room.now());
      const error = paced ? undefined : frameError(frames[i]);
      if (!paced && error === undefined) {
        lines.push(decodeUtf8(frames[i] as Uint8Array));
        continue;
      }
      if (lines.length > 0) room.hearAll(this.#member!, lines);
      lines = [];
      if (this.#connection.closing) return;
      if (paced) return this.#resumeLater(frames.slice(i));
      this.#connection.send(error!);
    }
    if (lines.length > 0) room.hearAll(this.#member!, lines);
  }

  async #resumeLater(frames: readonly Frame[]): Promise<void> {
    const { room, maxRate } = this.#context;
    // Wait for a tenth of a second's allowance (or for what is left of this
    // read, if less), not for each single line.
    const wanted = Math.min(Math.max(1, maxRate / 10), frames.length) - this.tokens;
    await this.#connection.pause((wanted * 1000) / maxRate);
    // The held lines are what the client sent: handling them counts as hearing from it.
    // (After a kick, a shutdown or a release, #chat drops them at once.)
    room.touch(this.#member!);
    return this.#chat(frames);
  }

  // ---- echo: the valid lines of one read, and an error line in place of
  // each bad one, are copied into one buffer: one allocation and one write.

  #echo(frames: readonly Frame[]): void {
    const pieces: Uint8Array[] = [];
    for (const frame of frames) {
      const error = frameError(frame);
      if (error !== undefined) pieces.push(error);
      else pieces.push(frame as Uint8Array, NEWLINE_BYTES);
    }
    this.#connection.send(joinBytes(pieces));
  }
}

const NEWLINE_BYTES = new Uint8Array([0x0a]);
const NO_BYTES = new Uint8Array(0);
const NO_FRAMES: readonly Frame[] = [];
const TOO_LONG_LINE = encodeLine(say.tooLong);
const INVALID_UTF8_LINE = encodeLine(say.invalidUtf8);

/**
 * Flood control's token bucket: takes one line from a client's allowance of
 * `rate` lines a second (at most `rate` saved up) if it has one. The bucket is
 * refilled on every call, so time spent full is never credited twice.
 */
export function takeToken(
  bucket: { tokens: number; tokensAt: number },
  rate: number,
  now: number,
): boolean {
  const elapsed = Math.max(0, now - bucket.tokensAt); // never a debt, whatever the clock did
  bucket.tokens = Math.min(rate, bucket.tokens + (elapsed * rate) / 1000);
  bucket.tokensAt = now;
  if (bucket.tokens < 1) return false;
  bucket.tokens--;
  return true;
}

/** The error line a bad frame gets (the same in both modes), or `undefined` if it is good. */
function frameError(frame: Frame): Uint8Array | undefined {
  if (frame === LINE_TOO_LONG) return TOO_LONG_LINE;
  if (!isValidUtf8(frame)) return INVALID_UTF8_LINE;
  return undefined;
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...SERVER_FLAGS,
    "max-clients": { type: "string", default: String(DEFAULT_MAX_CLIENTS) },
    "idle-timeout": { type: "string", default: "0" },
    "max-queue": { type: "string", default: String(DEFAULT_MAX_QUEUE_BYTES) },
    "max-rate": { type: "string", default: String(DEFAULT_MAX_RATE) },
    trace: { type: "boolean", default: false },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    "max-per-address": { type: "string", default: "0" },
    "password-file": { type: "string" },
    ...REDIS_FLAGS,
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const listen = parseListenFlags(flags);
  const redis = parseRedisFlags(flags, listen.mode);
  const options: ServerOptions = {
    ...listen,
    maxClients: parseInteger("--max-clients", flags["max-clients"], 1, 1_000_000),
    idleTimeoutMs: Math.round(
      parseSeconds("--idle-timeout", flags["idle-timeout"], "never") * 1000,
    ),
    maxQueueBytes: parseInteger("--max-queue", flags["max-queue"], MIN_MAX_QUEUE_BYTES, 1 << 30),
    maxRate: parseInteger("--max-rate", flags["max-rate"], 0, 1_000_000),
    trace: flags.trace,
    access: parseAccessFlags(flags),
  };
  options.password = await readPasswordFlag("server.ts", flags["password-file"], listen.mode);
  const tls = await readTlsFlags(flags["tls-cert"], flags["tls-key"]);
  return await runServer(
    "server.ts",
    tls === undefined ? "tcp" : "tls",
    listen,
    async (log) => {
      const seam = redis && await connectRoomSeam("server.ts", redis, log);
      if (tls === undefined) return startServer({ ...options, seam, log });
      try {
        return await startTlsServer({ ...options, seam, tls, log });
      } catch (error) {
        if (!(error instanceof Error && error.name === "TlsSetupError")) throw error;
        throw new RuntimeError(`server.ts: cannot use --tls-cert/--tls-key: ${error.message}`);
      }
    },
    { console: !flags["no-console"] },
  );
}

/** `--tls-cert` and `--tls-key`, both or neither: the PEM texts, or `undefined` for plain TCP. */
async function readTlsFlags(
  certPath: string | undefined,
  keyPath: string | undefined,
): Promise<TlsOptions | undefined> {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) {
    throw new UsageError("--tls-cert and --tls-key go together: give both, or neither");
  }
  // Without permission, the message names both files: the grant that covers them.
  const both = `${certPath},${keyPath}`;
  return {
    cert: await readFlagFile("server.ts", "--tls-cert", certPath, both),
    key: await readFlagFile("server.ts", "--tls-key", keyPath, both),
  };
}

if (import.meta.main) runMain("server.ts", () => main(Deno.args));
