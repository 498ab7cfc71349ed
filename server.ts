#!/usr/bin/env -S deno run --allow-net
/**
 * netchat TCP server: a chat room (the default) or an echo service.
 *
 * The C tutorial it grew from served one client on 127.0.0.1:9090 and traded
 * 256-byte buffers with it until one side quit. This one serves many clients
 * at once, keeps a registry of them (like Redis's CLIENT LIST), and makes each
 * step of TCP's life cycle visible with --trace.
 *
 *   deno run --allow-net server.ts                  chat room on 127.0.0.1:9090
 *   deno run --allow-net server.ts --mode echo      echo every line back
 *
 * @module
 */
import {
  decodeUtf8,
  encodeLine,
  Frame,
  isValidUtf8,
  LINE_TOO_LONG,
  LineFramer,
  READ_BUFFER_SIZE,
  sanitize,
  writeAll,
} from "./line_buffer.ts";
import {
  consoleLog,
  DEFAULT_HOST,
  DEFAULT_PORT,
  errorText,
  formatAddress,
  parseChoice,
  parseFlags,
  parseHost,
  parseInteger,
  parsePort,
  runMain,
  serve,
  withNetErrors,
} from "./cli.ts";
import {
  defaultName,
  listLine,
  nameError,
  nameKey,
  parseCommand,
  say,
  SERVER_NAME,
} from "./protocol.ts";

const USAGE = `Usage: deno run --allow-net server.ts [options]

A TCP chat room (every line goes to every other client as "<name> text")
or echo service (every line comes back to its sender).

Options:
  --host HOST          address to listen on (default ${DEFAULT_HOST}: this machine only)
  --port PORT          port to listen on, 0 for any free port (default ${DEFAULT_PORT})
  --mode chat|echo     chat room or echo service (default chat)
  --max-clients N      clients at once; the next one gets "ERR server full" (default 1000)
  --idle-timeout S     close a client that sends nothing for S seconds, 0 = never (default 0)
  --max-queue BYTES    output queued for one client before it is dropped as too slow
                       (default 1048576, at least 65536)
  --max-rate N         chat mode: lines a second one client may send, in bursts of up
                       to N; past it the server reads from that client more slowly
                       (nothing is lost), 0 = no limit (default 1000)
  --trace              print each connection's TCP life cycle (handshake, FINs, close)
  --help               show this help

Joins, leaves and renames are announced while the room has at most 100 clients.
Lines typed here go to every client as "<server> text". Console commands:
  /list   show the clients     /kick ID   disconnect one     /quit   shut down`;

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
/** How long a closing connection may take to send its FIN before it is closed anyway. */
export const CLOSE_GRACE_MS = 2000;
// Reads start small so an idle connection costs little memory, and grow to
// READ_BUFFER_SIZE for a client that sends a lot.
const INITIAL_READ_BYTES = 256;
// A client whose own queue is this full is not read from until it drains:
// backpressure, so an echo client that never reads cannot grow our memory.
const PAUSE_READING_BYTES = 64 * 1024;
// Joins, leaves and renames are announced only in a room of at most this many
// clients: each announcement goes to everyone, so a crowd of N arriving would
// cost N * N / 2 notices (12.5 million for 5,000 clients).
export const ANNOUNCE_LIMIT = 100;
// After an accept() failure that is not one client's doing (out of descriptors).
const ACCEPT_RETRY_MS = 100;
// Queued messages are joined into writes of at most this size.
const MAX_WRITE_BYTES = 64 * 1024;

export type Mode = "chat" | "echo";

export interface ServerOptions {
  host?: string;
  port?: number;
  mode?: Mode;
  maxClients?: number;
  /** 0 means never. */
  idleTimeoutMs?: number;
  maxQueueBytes?: number;
  /** Chat lines a second per client (and burst); 0 means no limit. */
  maxRate?: number;
  trace?: boolean;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
}

/** Why a connection ended, as logged and announced. */
type Cause = string;

interface Client {
  id: number;
  name: string;
  conn: Deno.TcpConn;
  connectedAt: number;
  lastHeardAt: number;
  /** Flood control: lines the client may still send now, as of `tokensAt`. */
  tokens: number;
  tokensAt: number;
  /** Flood control is holding this client's lines: it is not idle, and release wakes it. */
  paused?: { timer: ReturnType<typeof setTimeout>; resume: () => void };
  /** open: in the room. leaving: out of the room, flushing and closing. closed: released. */
  state: "open" | "leaving" | "closed";
  queue: Uint8Array[];
  /** Made on the client's first read: an idle client never needs one. */
  framer?: LineFramer;
  queuedBytes: number;
  writing: boolean;
  finReceived: boolean;
  finSent: boolean;
  graceTimer?: ReturnType<typeof setTimeout>;
  drained?: PromiseWithResolvers<void>;
}

export interface Server {
  addr: Deno.NetAddr;
  /** Runs a console command or relays a console line, as if typed at the server. */
  console(line: string): void;
  /** Stops accepting, tells clients, waits up to 2 s for their FINs, closes the rest. */
  shutdown(): Promise<void>;
  /** Resolves when the server has shut down. */
  finished: Promise<void>;
  /** Clients in the room (open connections that have not left). */
  readonly clientCount: number;
  /** Connections not yet fully closed, in the room or not. */
  readonly connectionCount: number;
}

/** Starts a server: it is listening when this returns (Deno.listen binds at once). */
export function startServer(options: ServerOptions = {}): Server {
  const mode = options.mode ?? "chat";
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
  const maxQueueBytes = options.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES;
  const idleTimeoutMs = options.idleTimeoutMs ?? 0;
  const maxRate = options.maxRate ?? DEFAULT_MAX_RATE;
  // Below one line a second the bucket could never hold a whole line.
  if (maxRate !== 0 && !(maxRate >= 1)) throw new RangeError("maxRate must be 0 or at least 1");
  const log = options.log ?? ((line: string) => console.log(line));
  const trace = options.trace
    ? (client: Client, step: string) => log(`trace ${addressOf(client)} ${step}`)
    : () => {};

  // socket, bind, listen. The C original's backlog of 5 cannot be set: Deno uses 511.
  const listener = Deno.listen({
    hostname: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
    transport: "tcp",
  });
  const addr = listener.addr;
  /** The room: every client that is open, by id. */
  const registry = new Map<number, Client>();
  /** Every connection not yet closed, including those leaving. */
  const connections = new Set<Client>();
  let nextId = 1;
  // Client times are whole milliseconds since the process started: small
  // integers, which V8 keeps inside the client object (a Date.now() value
  // takes a 16-byte box per field per client). performance.now() never goes
  // back when the system clock is set back, so no bucket or idle time can.
  const clock = () => Math.floor(performance.now());
  let shuttingDown = false;
  let shutdownStartedAt = 0;
  let closedWithoutFin = 0;
  let shutdownEnded = false;
  const finished = Promise.withResolvers<void>();

  // ---- output: a bounded queue per client, flushed by one writer at a time

  function send(client: Client, bytes: Uint8Array): void {
    if (client.state === "closed") return;
    if (client.queuedBytes + bytes.length > maxQueueBytes) {
      log(
        `dropping ${
          addressOf(client)
        } id=${client.id}: output queue over ${maxQueueBytes} bytes (not reading fast enough)`,
      );
      leave(client, "slow consumer");
      release(client);
      return;
    }
    client.queue.push(bytes);
    client.queuedBytes += bytes.length;
    // Start the writer after the current read is processed, so all the lines
    // from one read go out in one write.
    if (!client.writing) {
      client.writing = true;
      queueMicrotask(() => flush(client));
    }
  }

  function sendLine(client: Client, text: string): void {
    send(client, encodeLine(text));
  }

  // Receivers of the same broadcasts queue the same buffers in the same order,
  // so the last batch joined is kept and handed to the next receiver whose
  // queue starts with exactly those buffers: one copy for the room, not one
  // per receiver. Writes only read a batch, so sharing it is safe.
  let lastJoin: { pieces: Uint8Array[]; bytes: Uint8Array } | undefined;

  function takeBatch(client: Client): Uint8Array {
    if (client.queue.length === 1 || client.queue[0].length >= MAX_WRITE_BYTES) {
      return client.queue.shift()!;
    }
    let size = 0;
    let count = 0;
    while (count < client.queue.length && size + client.queue[count].length <= MAX_WRITE_BYTES) {
      size += client.queue[count++].length;
    }
    const pieces = client.queue.splice(0, count);
    if (
      lastJoin !== undefined && lastJoin.pieces.length === count &&
      pieces.every((piece, i) => piece === lastJoin!.pieces[i])
    ) {
      return lastJoin.bytes;
    }
    const batch = new Uint8Array(size);
    let offset = 0;
    for (const piece of pieces) {
      batch.set(piece, offset);
      offset += piece.length;
    }
    lastJoin = { pieces, bytes: batch };
    return batch;
  }

  async function flush(client: Client): Promise<void> {
    try {
      while (client.queue.length > 0 && client.state !== "closed") {
        const batch = takeBatch(client);
        // Most writes are taken whole: one write op before the general loop
        // saves an async call and a view per write (and garbage per client).
        const written = await client.conn.write(batch);
        if (written < batch.length) await writeAll(client.conn, batch.subarray(written));
        client.queuedBytes -= batch.length;
      }
      if (client.state === "leaving" && !client.finSent && client.finReceived) {
        // Close, step 3: the client's FIN is in, so close() sends ours and
        // frees the socket in one step (releaseIfDone below).
        client.finSent = true;
        trace(client, "FIN sent (close: both directions are done)");
      } else if (client.state === "leaving" && !client.finSent) {
        // Close, step 1: our FIN. Half-close: we can still read theirs.
        await client.conn.closeWrite();
        client.finSent = true;
        trace(client, "FIN sent (closeWrite: no more data from the server)");
      }
    } catch (error) {
      writeFailed(client, error);
    } finally {
      client.writing = false;
      if (client.queue.length === 0) client.drained?.resolve();
      releaseIfDone(client);
    }
  }

  function writeFailed(client: Client, error: unknown): void {
    if (client.state === "closed") return; // we closed it ourselves
    leave(client, isReset(error) ? "reset" : `write error: ${errorText(error)}`);
    release(client);
  }

  // With nothing queued, bytes go straight to the socket, skipping the queue
  // and its writer. An echo goes from the read buffer, and the next read waits
  // for it: no copy, no allocation, and backpressure for free. The welcome of
  // each new client goes this way too (a burst of accepts makes less garbage).
  // With something queued, the bytes join the queue, after what is there.
  async function writeNow(client: Client, block: Uint8Array): Promise<void> {
    if (client.writing || client.queue.length > 0) return send(client, block.slice());
    client.writing = true;
    try {
      const written = await client.conn.write(block);
      if (written < block.length) await writeAll(client.conn, block.subarray(written));
    } catch (error) {
      client.writing = false;
      return writeFailed(client, error);
    }
    client.writing = false;
    // Whatever was queued meanwhile, or the FIN of a close that began meanwhile.
    if (client.queue.length > 0 || client.state === "leaving") {
      client.writing = true;
      queueMicrotask(() => flush(client));
    }
  }

  function waitDrained(client: Client): Promise<void> {
    client.drained ??= Promise.withResolvers<void>();
    return client.drained.promise.then(() => {
      client.drained = undefined;
    });
  }

  // ---- the room

  /** Tells the room about a join, leave or rename, unless the room is too big for that. */
  function announce(text: string, except?: Client): void {
    if (registry.size <= ANNOUNCE_LIMIT) broadcast(text, except);
  }

  function broadcast(text: string, except?: Client): void {
    const bytes = encodeLine(text);
    for (const client of registry.values()) {
      if (client !== except) send(client, bytes);
    }
  }

  function clientByName(name: string): Client | undefined {
    const key = nameKey(name);
    for (const client of registry.values()) {
      if (nameKey(client.name) === key) return client;
    }
    return undefined;
  }

  /**
   * The one place a client leaves the room: it is taken out of the registry,
   * the others are told, and its connection starts closing (flush, FIN, wait
   * for the peer's FIN at most CLOSE_GRACE_MS).
   */
  function leave(client: Client, cause: Cause, notice?: string): void {
    if (client.state !== "open") return;
    client.state = "leaving";
    wakeReader(client); // so its FIN is read now, not after the pause
    if (registry.delete(client.id)) {
      log(`closed ${addressOf(client)} id=${client.id} ${client.name} (${cause})`);
      // In a shutdown everybody is leaving: each gets the shutdown notice instead.
      if (mode === "chat" && !shuttingDown) announce(say.left(client.name, cause));
    } else {
      log(`closed ${addressOf(client)} (${cause})`);
    }
    if (notice !== undefined && mode === "chat") {
      // The shutdown notice goes ahead of whatever is still queued: in a busy
      // room a client could otherwise spend the whole 2 s of grace reading its
      // backlog and never learn why the server closed. Queued entries are whole
      // lines, so this keeps lines whole.
      if (shuttingDown) {
        const bytes = encodeLine(notice);
        client.queue.unshift(bytes);
        client.queuedBytes += bytes.length;
      } else {
        sendLine(client, notice);
      }
    }
    // Nothing to wait for when the client's FIN is in and nothing is left to
    // send: the flush below closes at once (the common end of a connection).
    const closesAtOnce = client.finReceived && !client.writing && client.queue.length === 0;
    if (!closesAtOnce) client.graceTimer = setTimeout(() => release(client), CLOSE_GRACE_MS);
    if (!client.writing) {
      client.writing = true;
      queueMicrotask(() => flush(client));
    }
  }

  /** Closes the socket for good. After a clean close both FINs have been exchanged. */
  function release(client: Client): void {
    if (client.state === "closed") return;
    client.state = "closed";
    clearTimeout(client.graceTimer);
    wakeReader(client); // it sees the client closed, and ends
    client.queue = [];
    client.queuedBytes = 0;
    connections.delete(client);
    try {
      client.conn.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to free.
    }
    trace(client, "closed (socket released)");
    client.drained?.resolve();
    if (shuttingDown && !client.finReceived) closedWithoutFin++;
    if (shuttingDown && connections.size === 0) endShutdown();
  }

  function releaseIfDone(client: Client): void {
    if (client.state === "leaving" && client.finSent && client.finReceived) release(client);
  }

  // ---- input

  function handleChatLine(client: Client, line: Uint8Array): void {
    const text = sanitize(decodeUtf8(line));
    const command = parseCommand(text);
    if (command === undefined) {
      const relay = say.relay(client.name, text);
      log(relay);
      broadcast(relay, client);
      return;
    }
    switch (command.name) {
      case "/nick":
        return rename(client, command.argument);
      case "/list":
        return listClients((line) => sendLine(client, line));
      case "/quit":
        return leave(client, "quit", say.bye);
      case "/help":
        for (const line of say.help) sendLine(client, line);
        return;
      default:
        sendLine(client, say.unknownCommand(command.name));
    }
  }

  function rename(client: Client, name: string): void {
    if (name === "") return sendLine(client, say.nickUsage);
    const error = nameError(name);
    if (error !== undefined) return sendLine(client, error);
    const holder = clientByName(name);
    if (holder !== undefined && holder !== client) return sendLine(client, say.nameTaken(name));
    const old = client.name;
    client.name = name;
    log(`renamed ${addressOf(client)} id=${client.id} ${old} -> ${name}`);
    sendLine(client, say.renamed(old, name));
    announce(say.renamed(old, name), client);
  }

  function listClients(output: (line: string) => void): void {
    const now = clock();
    for (const client of registry.values()) {
      output(listLine({ ...client, address: addressOf(client) }, now));
    }
    output(say.count(registry.size, "client"));
  }

  /**
   * Handles the frames of one read. In chat mode a client out of its line
   * allowance is paused here, before its next line: the returned promise
   * settles when all are handled, and its reading waits for that.
   */
  function handleFrames(client: Client, frames: Frame[]): void | Promise<void> {
    if (mode === "echo") return echoFrames(client, frames);
    for (let i = 0; i < frames.length; i++) {
      if (client.state !== "open") return;
      if (maxRate > 0 && !takeToken(client, maxRate, clock())) {
        return resumeLater(client, frames.slice(i));
      }
      const error = frameError(frames[i]);
      if (error !== undefined) send(client, error);
      else handleChatLine(client, frames[i] as Uint8Array);
    }
  }

  // ---- flood control: a token bucket per client, refilled at maxRate a second

  async function resumeLater(client: Client, frames: Frame[]): Promise<void> {
    // Wait for a tenth of a second's allowance (or for what is left of this
    // read, if less), not for each single line.
    const wanted = Math.min(Math.max(1, maxRate / 10), frames.length) - client.tokens;
    await new Promise<void>((resume) => {
      const timer = setTimeout(resume, (wanted * 1000) / maxRate);
      client.paused = { timer, resume };
    });
    client.paused = undefined;
    // The held lines are what the client sent: handling them counts as hearing from it.
    // (After a kick, a shutdown or a release, handleFrames drops them at once.)
    client.lastHeardAt = clock();
    return handleFrames(client, frames);
  }

  /** Ends a flood-control pause early: the client left, and only its FIN is still read. */
  function wakeReader(client: Client): void {
    if (client.paused === undefined) return;
    clearTimeout(client.paused.timer);
    client.paused.resume();
  }

  // Echo: the valid lines of one read, and an error line in place of each bad
  // one, are copied into one buffer: one allocation and one write per read.
  function echoFrames(client: Client, frames: Frame[]): void {
    const pieces: Uint8Array[] = [];
    for (const frame of frames) {
      const error = frameError(frame);
      if (error !== undefined) pieces.push(error);
      else pieces.push(frame as Uint8Array, NEWLINE_BYTES);
    }
    let size = 0;
    for (const piece of pieces) size += piece.length;
    const echo = new Uint8Array(size);
    let offset = 0;
    for (const piece of pieces) {
      echo.set(piece, offset);
      offset += piece.length;
    }
    send(client, echo);
  }

  // An idle connection waits in this loop, so it keeps little: the work on a
  // chunk is done by handleChunk, and the error path by readFailed.
  async function readFrom(client: Client): Promise<void> {
    let buffer = new Uint8Array(INITIAL_READ_BYTES);
    try {
      while (true) {
        if (client.queuedBytes >= PAUSE_READING_BYTES) await waitDrained(client);
        if (client.state === "closed") return;
        const n = await client.conn.read(buffer);
        if (n === null) break;
        // After /quit, a kick or shutdown, input is read only to find the FIN.
        if (client.state !== "open") continue;
        // The frames are views into `buffer`: it is not read into again until they are handled.
        const handling = handleChunk(client, buffer.subarray(0, n));
        if (handling !== undefined) await handling;
        if (n === buffer.length && buffer.length < READ_BUFFER_SIZE) {
          buffer = new Uint8Array(READ_BUFFER_SIZE);
        }
      }
    } catch (error) {
      return readFailed(client, error);
    }
    // Close: the peer's FIN arrived; the kernel has already ACKed it.
    client.finReceived = true;
    trace(client, "FIN received (read returned EOF: the client sends no more)");
    // Everything the client sent before its FIN has been handled above.
    leave(client, "eof");
    releaseIfDone(client);
  }

  function handleChunk(client: Client, chunk: Uint8Array): void | Promise<void> {
    client.lastHeardAt = clock();
    client.framer ??= new LineFramer();
    // Echo's fast path: a block of good lines goes back in one write.
    const end = mode === "echo" ? client.framer.wholeLinesEnd(chunk) : 0;
    if (end > 0 && isValidUtf8(chunk.subarray(0, end))) {
      if (end < chunk.length) client.framer.push(chunk.subarray(end));
      return writeNow(client, chunk.subarray(0, end));
    }
    return handleFrames(client, client.framer.push(chunk));
  }

  function readFailed(client: Client, error: unknown): void {
    if (client.state === "closed") return; // we closed it ourselves
    const cause = isReset(error) ? "reset" : `read error: ${errorText(error)}`;
    if (cause === "reset") trace(client, "RST received (connection reset by peer)");
    leave(client, cause);
    release(client);
  }

  function accept(conn: Deno.TcpConn): void {
    conn.setNoDelay(true);
    const now = clock();
    const id = nextId++;
    const client: Client = {
      id,
      name: defaultName(id),
      conn,
      connectedAt: now,
      lastHeardAt: now,
      tokens: maxRate,
      tokensAt: now,
      state: "open",
      queue: [],
      queuedBytes: 0,
      writing: false,
      finReceived: false,
      finSent: false,
    };
    connections.add(client);
    // Handshake: accept() returns after SYN, SYN-ACK, ACK have completed.
    trace(client, "accepted (handshake done: SYN, SYN-ACK, ACK)");
    if (registry.size >= maxClients) {
      log(`refused ${addressOf(client)}: server full (max ${maxClients} clients)`);
      sendLine(client, say.serverFull(maxClients, "client"));
      leave(client, "server full");
    } else {
      registry.set(id, client);
      log(`connected ${addressOf(client)} id=${id} ${client.name}`);
      if (mode === "chat") {
        writeNow(client, encodeLine(say.welcome(client.name)));
        announce(say.joined(client.name), client);
      }
    }
    readFrom(client);
  }

  async function acceptLoop(): Promise<void> {
    while (!shuttingDown) {
      let conn: Deno.TcpConn;
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
      accept(conn);
    }
  }

  // ---- idle timeout: one sweep for everybody, counting only what clients send

  let idleSweep: ReturnType<typeof setInterval> | undefined;
  if (idleTimeoutMs > 0) {
    idleSweep = setInterval(() => {
      const now = clock();
      for (const client of registry.values()) {
        if (client.paused === undefined && now - client.lastHeardAt >= idleTimeoutMs) {
          leave(client, "idle timeout", say.idle);
        }
      }
    }, Math.min(1000, Math.max(10, idleTimeoutMs / 4)));
  }

  // ---- console

  function consoleLine(line: string): void {
    const command = parseCommand(line);
    if (command === undefined) {
      if (mode === "echo") return log("echo mode: console lines are not sent to clients");
      const relay = say.relay(SERVER_NAME, sanitize(line));
      log(relay);
      broadcast(relay);
      return;
    }
    switch (command.name) {
      case "/list":
        return listClients(log);
      case "/kick": {
        const client = registry.get(Number(command.argument));
        if (!/^\d+$/.test(command.argument) || client === undefined) {
          return log(`no client with id ${command.argument} (see /list)`);
        }
        return leave(client, "kicked", say.kicked);
      }
      case "/quit":
        shutdown();
        return;
      default:
        log(`unknown console command ${command.name} (try /list, /kick ID, /quit)`);
    }
  }

  function shutdown(): Promise<void> {
    if (shuttingDown) return finished.promise;
    shuttingDown = true;
    shutdownStartedAt = performance.now();
    log("shutting down");
    clearInterval(idleSweep);
    listener.close(); // stop accepting: new connections are refused from here on
    for (const client of [...registry.values()]) {
      leave(client, "shutdown", say.shuttingDown);
    }
    if (connections.size === 0) endShutdown();
    // The whole shutdown waits CLOSE_GRACE_MS at most for FINs, then closes the rest.
    const deadline = setTimeout(() => {
      for (const client of [...connections]) release(client); // the last one ends the shutdown
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
    finished.resolve();
  }

  acceptLoop();
  return {
    addr: addr as Deno.NetAddr,
    console: consoleLine,
    shutdown,
    finished: finished.promise,
    get clientCount() {
      return registry.size;
    },
    get connectionCount() {
      return connections.size;
    },
  };
}

const NEWLINE_BYTES = new Uint8Array([0x0a]);
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

function addressOf(client: { conn: Deno.TcpConn }): string {
  return formatAddress(client.conn.remoteAddr);
}

function isReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted;
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    host: { type: "string", default: DEFAULT_HOST },
    port: { type: "string", default: String(DEFAULT_PORT) },
    mode: { type: "string", default: "chat" },
    "max-clients": { type: "string", default: String(DEFAULT_MAX_CLIENTS) },
    "idle-timeout": { type: "string", default: "0" },
    "max-queue": { type: "string", default: String(DEFAULT_MAX_QUEUE_BYTES) },
    "max-rate": { type: "string", default: String(DEFAULT_MAX_RATE) },
    trace: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const options: ServerOptions = {
    host: parseHost(flags.host),
    port: parsePort(flags.port),
    mode: parseChoice("--mode", flags.mode, ["chat", "echo"] as const),
    maxClients: parseInteger("--max-clients", flags["max-clients"], 1, 1_000_000),
    idleTimeoutMs: parseInteger("--idle-timeout", flags["idle-timeout"], 0, 86_400) * 1000,
    maxQueueBytes: parseInteger("--max-queue", flags["max-queue"], MIN_MAX_QUEUE_BYTES, 1 << 30),
    maxRate: parseInteger("--max-rate", flags["max-rate"], 0, 1_000_000),
    trace: flags.trace,
  };

  const log = consoleLog();
  const server = await withNetErrors(
    "server.ts",
    `cannot listen on ${options.host}:${options.port}`,
    () => startServer({ ...options, log: log.line }),
  );
  return await serve("server.ts", server, `tcp, ${options.mode}`, log);
}

if (import.meta.main) runMain("server.ts", () => main(Deno.args));
