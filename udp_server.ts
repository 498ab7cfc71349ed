#!/usr/bin/env -S deno run --allow-net
/**
 * netchat UDP server: a chat room (the default) or an echo service, over
 * datagrams instead of a connection.
 *
 * UDP has no handshake and no close: the server binds one socket and answers
 * whoever sends to it (the C original's sendto/recvfrom). So the chat room is a
 * table of the addresses it has heard from, and a peer leaves with /quit or by
 * falling silent for --peer-timeout seconds. One datagram is one message of at
 * most 256 bytes (a trailing "\n" optional); anything larger is refused whole.
 *
 *   deno run --allow-net udp_server.ts                  chat room on 127.0.0.1:9090
 *   deno run --allow-net udp_server.ts --mode echo      send every datagram back
 *
 * @module
 */
import {
  decodeUtf8,
  encodeLine,
  isValidUtf8,
  MAX_BUFFER_SIZE,
  MAX_MESSAGE_BYTES,
  sanitize,
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
  UsageError,
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

const USAGE = `Usage: deno run --allow-net udp_server.ts [options]

A UDP chat room (every datagram goes to every other peer as "<name> text")
or echo service (every datagram goes back to its sender).

Options:
  --host HOST          address to bind (default ${DEFAULT_HOST}: this machine only)
  --port PORT          port to bind, 0 for any free port (default ${DEFAULT_PORT})
  --mode chat|echo     chat room or echo service (default chat)
  --peer-timeout S     forget a peer that sends nothing for S seconds (default 300)
  --max-peers N        peers at once; a newcomer beyond gets "ERR server full" (default 1000)
  --help               show this help

A datagram is one message: at most ${MAX_BUFFER_SIZE} bytes, a trailing "\\n" optional.
Lines typed here go to every peer as "<server> text". Console commands:
  /list   show the peers     /kick ID   forget one     /quit   shut down`;

export const DEFAULT_PEER_TIMEOUT_S = 300;
export const DEFAULT_MAX_PEERS = 1000;
/**
 * The receive buffer: the largest UDP payload (65,507 bytes over IPv4, 65,527
 * over IPv6) fits. Linux cuts a datagram to the buffer without saying so, so a
 * 256-byte buffer could not tell a 256-byte datagram from a 60 KB one.
 */
export const RECEIVE_BUFFER_SIZE = 65_535;
// Longest timeout a flag accepts: a day.
const MAX_PEER_TIMEOUT_S = 86_400;

export type Mode = "chat" | "echo";

export interface UdpServerOptions {
  host?: string;
  port?: number;
  mode?: Mode;
  /** A peer silent for this long is forgotten (announced as "left (timeout)"). */
  peerTimeoutMs?: number;
  maxPeers?: number;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
}

/** A peer the chat server has heard from. Its address is its identity. */
interface Peer {
  id: number;
  name: string;
  addr: Deno.NetAddr;
  address: string;
  connectedAt: number;
  lastHeardAt: number;
}

export interface UdpServer {
  addr: Deno.NetAddr;
  /** Runs a console command or relays a console line, as if typed at the server. */
  console(line: string): void;
  /** Tells every peer "* server shutting down" and closes the socket. */
  shutdown(): Promise<void>;
  /** Resolves when the server has shut down. */
  finished: Promise<void>;
  /** Peers in the table (never more than maxPeers). */
  readonly peerCount: number;
}

/** What a datagram holds once checked: its message, or the error to answer with. */
export type Checked = { text: Uint8Array } | { error: string };

/** The error for a datagram over the limit; the server never acts on a cut-off piece. */
export const DATAGRAM_TOO_LARGE = `ERR datagram too large (max ${MAX_BUFFER_SIZE} bytes)`;
/** The error for a chat datagram holding two lines: one datagram is one message. */
export const ONE_LINE_PER_DATAGRAM = "ERR one line per datagram";

/**
 * Checks one datagram as one message: one trailing "\n" (and a "\r" before
 * it) is dropped, and what is left must be at most 255 bytes of UTF-8. So 256
 * bytes is fine when the last is "\n"; otherwise the datagram fits the
 * buffer but its line does not, which is the TCP error, "line too long".
 */
export function checkDatagram(datagram: Uint8Array): Checked {
  if (datagram.length > MAX_BUFFER_SIZE) return { error: DATAGRAM_TOO_LARGE };
  let end = datagram.length;
  if (end > 0 && datagram[end - 1] === 0x0a) end--;
  if (end > 0 && datagram[end - 1] === 0x0d && end < datagram.length) end--;
  if (end > MAX_MESSAGE_BYTES) return { error: say.tooLong };
  if (!isValidUtf8(datagram)) return { error: say.invalidUtf8 };
  return { text: datagram.subarray(0, end) };
}

/** Binds the socket and starts serving; throws if the address cannot be bound. */
export function startUdpServer(options: UdpServerOptions = {}): UdpServer {
  const mode = options.mode ?? "chat";
  const maxPeers = options.maxPeers ?? DEFAULT_MAX_PEERS;
  const peerTimeoutMs = options.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_S * 1000;
  const log = options.log ?? ((line: string) => console.log(line));

  // Always name the host: Deno's default for datagrams is 0.0.0.0, every interface.
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
  });
  const addr = socket.addr as Deno.NetAddr;
  /** The room: every peer heard from and not yet gone, by "host:port". */
  const peers = new Map<string, Peer>();
  let nextId = 1;
  // Peer times come from the monotonic clock: setting the system clock
  // forward must not time every peer out, nor setting it back keep them.
  const clock = () => performance.now();
  let shuttingDown = false;
  let closed = false;
  const finished = Promise.withResolvers<void>();

  // ---- output: one datagram per line, sent at once (UDP has no queue to fill)

  async function sendTo(to: Deno.NetAddr, bytes: Uint8Array): Promise<void> {
    try {
      await socket.send(bytes, to);
    } catch (error) {
      // One peer's bad address (or a closed socket at shutdown) must not stop the others.
      if (!closed) log(`send to ${formatAddress(to)} failed: ${errorText(error)}`);
    }
  }

  function sendLine(to: Deno.NetAddr, text: string): Promise<void> {
    return sendTo(to, encodeLine(text));
  }

  async function broadcast(text: string, except?: Peer): Promise<void> {
    const bytes = encodeLine(text);
    for (const peer of [...peers.values()]) {
      if (peer !== except) await sendTo(peer.addr, bytes);
    }
  }

  function peerByName(name: string): Peer | undefined {
    const key = nameKey(name);
    for (const peer of peers.values()) {
      if (nameKey(peer.name) === key) return peer;
    }
    return undefined;
  }

  /** The one place a peer leaves the table; the others are told why. */
  async function leave(peer: Peer, cause: string, notice?: string): Promise<void> {
    if (!peers.delete(peer.address)) return;
    log(`left ${peer.address} id=${peer.id} ${peer.name} (${cause})`);
    // No close to wait for: the notice is the whole goodbye, and it may be lost.
    if (notice !== undefined) await sendLine(peer.addr, notice);
    await broadcast(say.left(peer.name, cause));
  }

  /**
   * A newcomer joins on its first good datagram. When that datagram is a
   * valid `/nick NAME`, it joins under that name, so others see one notice.
   */
  async function join(
    from: Deno.NetAddr,
    address: string,
    text: string,
  ): Promise<Peer | undefined> {
    if (peers.size >= maxPeers) {
      log(`refused ${address}: server full (max ${maxPeers} peers)`);
      await sendLine(from, say.serverFull(maxPeers, "peer"));
      return undefined;
    }
    const id = nextId++;
    let name = defaultName(id);
    const command = parseCommand(text);
    if (command?.name === "/nick" && nameError(command.argument) === undefined) {
      if (peerByName(command.argument) === undefined) name = command.argument;
    }
    const now = clock();
    const peer: Peer = { id, name, addr: from, address, connectedAt: now, lastHeardAt: now };
    peers.set(address, peer);
    log(`joined ${address} id=${id} ${name}`);
    await sendLine(from, say.welcome(name));
    await broadcast(say.joined(name), peer);
    return peer;
  }

  async function handleChat(from: Deno.NetAddr, address: string, bytes: Uint8Array) {
    let peer = peers.get(address);
    if (peer !== undefined) peer.lastHeardAt = clock();
    const checked = checkDatagram(bytes);
    if ("error" in checked) return await refuse(from, address, bytes, checked.error);
    if (checked.text.includes(0x0a)) {
      return await refuse(from, address, bytes, ONE_LINE_PER_DATAGRAM);
    }
    const text = sanitize(decodeUtf8(checked.text));
    if (peer === undefined) {
      peer = await join(from, address, text);
      if (peer === undefined) return;
      // A first "/nick NAME" has named the newcomer already; a bad one is answered below.
      const command = parseCommand(text);
      if (command?.name === "/nick" && command.argument === peer.name) return;
    }
    await handleChatLine(peer, text);
  }

  async function handleChatLine(peer: Peer, text: string): Promise<void> {
    const command = parseCommand(text);
    if (command === undefined) {
      // An empty datagram (or one of control characters only) says "I am here", nothing more.
      if (text === "") return;
      const relay = say.relay(peer.name, text);
      log(relay);
      return await broadcast(relay, peer);
    }
    switch (command.name) {
      case "/nick":
        return await rename(peer, command.argument);
      case "/list":
        return await listPeers((line) => sendLine(peer.addr, line));
      case "/quit":
        return await leave(peer, "quit", say.bye);
      case "/help":
        for (const line of say.help) await sendLine(peer.addr, line);
        return;
      default:
        await sendLine(peer.addr, say.unknownCommand(command.name));
    }
  }

  async function rename(peer: Peer, name: string): Promise<void> {
    if (name === "") return await sendLine(peer.addr, say.nickUsage);
    const error = nameError(name);
    if (error !== undefined) return await sendLine(peer.addr, error);
    const holder = peerByName(name);
    if (holder !== undefined && holder !== peer) {
      return await sendLine(peer.addr, say.nameTaken(name));
    }
    const old = peer.name;
    peer.name = name;
    log(`renamed ${peer.address} id=${peer.id} ${old} -> ${name}`);
    await broadcast(say.renamed(old, name));
  }

  // One datagram per line: a 1000-line list in one datagram would pass the UDP maximum.
  async function listPeers(output: (line: string) => Promise<void>): Promise<void> {
    const now = clock();
    for (const peer of [...peers.values()]) await output(listLine(peer, now));
    await output(say.count(peers.size, "peer"));
  }

  async function refuse(from: Deno.NetAddr, address: string, bytes: Uint8Array, error: string) {
    log(`refused ${address}: ${error.slice("ERR ".length)} (${bytes.length} bytes)`);
    await sendLine(from, error);
  }

  // Echo: a good datagram goes back byte for byte, "\n" or not; nothing else is sent.
  async function handleEcho(from: Deno.NetAddr, address: string, bytes: Uint8Array) {
    const checked = checkDatagram(bytes);
    if ("error" in checked) return await refuse(from, address, bytes, checked.error);
    await sendTo(from, bytes);
  }

  async function receiveLoop(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (!shuttingDown) {
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [datagram, source] = await socket.receive(buffer);
        bytes = datagram;
        from = source as Deno.NetAddr;
      } catch (error) {
        if (closed) return;
        // An ICMP error for an earlier send can surface here; it ends nothing.
        log(`receive failed: ${errorText(error)}`);
        continue;
      }
      if (shuttingDown) continue;
      const address = formatAddress(from);
      log(`datagram from ${address}: ${bytes.length} bytes`);
      // Handled one at a time: the kernel's socket buffer is the only queue, and it is bounded.
      if (mode === "echo") await handleEcho(from, address, bytes);
      else await handleChat(from, address, bytes);
    }
  }

  // ---- peer timeout: one sweep for everybody, counting only what peers send

  const timeoutSweep = mode === "chat"
    ? setInterval(() => {
      const now = clock();
      for (const peer of [...peers.values()]) {
        if (now - peer.lastHeardAt >= peerTimeoutMs) leave(peer, "timeout", say.idle);
      }
    }, Math.min(1000, Math.max(10, peerTimeoutMs / 4)))
    : undefined;

  // ---- console

  function consoleLine(line: string): void {
    const command = parseCommand(line);
    if (command === undefined) {
      if (mode === "echo") return log("echo mode: console lines are not sent to peers");
      const relay = say.relay(SERVER_NAME, sanitize(line));
      log(relay);
      broadcast(relay);
      return;
    }
    switch (command.name) {
      case "/list": {
        const now = clock();
        for (const peer of peers.values()) log(listLine(peer, now));
        return log(say.count(peers.size, "peer"));
      }
      case "/kick": {
        const peer = [...peers.values()].find((peer) => String(peer.id) === command.argument);
        if (peer === undefined) return log(`no peer with id ${command.argument} (see /list)`);
        leave(peer, "kicked", say.kicked);
        return;
      }
      case "/quit":
        shutdown();
        return;
      default:
        log(`unknown console command ${command.name} (try /list, /kick ID, /quit)`);
    }
  }

  async function shutdown(): Promise<void> {
    if (shuttingDown) return finished.promise;
    shuttingDown = true; // datagrams that arrive from here on are not handled
    log("shutting down");
    clearInterval(timeoutSweep);
    // Sends on loopback or a LAN finish at once; nobody answers, so nothing to wait for.
    await broadcast(say.shuttingDown);
    closed = true;
    peers.clear();
    socket.close(); // also ends the pending receive()
    finished.resolve();
  }

  receiveLoop().catch((error) => {
    log(`receive loop failed: ${errorText(error)}`);
    shutdown();
  });
  return {
    addr,
    console: consoleLine,
    shutdown,
    finished: finished.promise,
    get peerCount() {
      return peers.size;
    },
  };
}

/** Seconds, fractions allowed (0.2 for a quick test), from just above 0 to a day. */
export function parseSeconds(flag: string, value: string): number {
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(seconds > 0 && seconds <= MAX_PEER_TIMEOUT_S)) {
    throw new UsageError(
      `Cannot parse ${flag} "${value}": must be seconds above 0, at most ${MAX_PEER_TIMEOUT_S}`,
    );
  }
  return seconds;
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    host: { type: "string", default: DEFAULT_HOST },
    port: { type: "string", default: String(DEFAULT_PORT) },
    mode: { type: "string", default: "chat" },
    "peer-timeout": { type: "string", default: String(DEFAULT_PEER_TIMEOUT_S) },
    "max-peers": { type: "string", default: String(DEFAULT_MAX_PEERS) },
    help: { type: "boolean", default: false },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const options: UdpServerOptions = {
    host: parseHost(flags.host),
    port: parsePort(flags.port),
    mode: parseChoice("--mode", flags.mode, ["chat", "echo"] as const),
    peerTimeoutMs: parseSeconds("--peer-timeout", flags["peer-timeout"]) * 1000,
    maxPeers: parseInteger("--max-peers", flags["max-peers"], 1, 1_000_000),
  };

  const log = consoleLog();
  const server = await withNetErrors(
    "udp_server.ts",
    `cannot listen on ${options.host}:${options.port}`,
    () => startUdpServer({ ...options, log: log.line }),
  );
  return await serve("udp_server.ts", server, `udp, ${options.mode}`, log);
}

if (import.meta.main) runMain("udp_server.ts", () => main(Deno.args));
