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
 * The chat room is room.ts, the same as the TCP server's; this file owns the
 * socket, the receive loop and the `Outbox` that sends one datagram per line.
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
} from "./line_buffer.ts";
import {
  connectRoomSeam,
  type ConsoleServer,
  DEFAULT_HOST,
  DEFAULT_PORT,
  errorText,
  formatAddress,
  type Mode,
  parseFlags,
  parseInteger,
  parseListenFlags,
  parseRedisFlags,
  parseSeconds,
  REDIS_FLAGS,
  runMain,
  runServer,
  SERVER_FLAGS,
  UsageError,
} from "./cli.ts";
import { MAX_PASSWORD_TRIES, nameError, passwordIn, readCommand, say } from "./protocol.ts";
import { type Member, type MemberLink, Room, type RoomSeam } from "./room.ts";
import {
  AccessControl,
  type AccessOptions,
  AnswerBudget,
  parseAccessFlags,
  STRANGER_ANSWERS_PER_SECOND,
} from "./access.ts";
import {
  lockoutLine,
  type Password,
  PASSWORD_LOCKOUT_MS,
  PasswordTries,
  readPasswordFlag,
} from "./auth.ts";

const USAGE = `Usage: deno run --allow-net udp_server.ts [options]

A UDP chat room (every datagram goes to every other peer as "<name> text")
or echo service (every datagram goes back to its sender).

Options:
  --host HOST          address to bind (default ${DEFAULT_HOST}: this machine only); ::1 or
                       [::1] for IPv6, :: for every interface (and IPv4 too, on Linux)
  --port PORT          port to bind, 0 for any free port (default ${DEFAULT_PORT})
  --mode chat|echo     chat room or echo service (default chat)
  --reuse-port         refused: Deno cannot share a UDP port among processes yet
                       (no SO_REUSEPORT for datagrams); server.ts --reuse-port can over TCP
  --peer-timeout S     forget a peer that sends nothing for S seconds (default 300)
  --max-peers N        peers at once; a newcomer beyond gets "ERR server full" (default 1000)
  --allow ADDR[/BITS]  only these may send: an IPv4 or IPv6 address or CIDR range
                       (127.0.0.0/8, ::1, 2001:db8::/32); repeat it or join with commas.
                       An IPv4 peer seen as ::ffff:a.b.c.d matches IPv4 rules
  --deny ADDR[/BITS]   these may not, even if --allow lists them (as in ncat: deny wins).
                       A refused sender gets "ERR not allowed from ADDRESS"
  --max-per-address N  chat mode: peers from one IP address (any port) at once,
                       0 = no limit (default 0)
  --password-file FILE chat mode: the room's password is FILE's first line (needs
                       --allow-read=FILE). A newcomer's first datagram must be
                       /pass PASSWORD; after 3 wrong ones from its address (an IPv6
                       /64), from any ports, that address is ignored for 60 s
  --redis URL          share the room with every server started with the same --redis
                       and --room, TCP or UDP, here or on other machines: redis://HOST:PORT
                       or redis://:PASSWORD@HOST:PORT (the password is never logged)
  --room NAME          the shared room's name (default main)
  --no-console         do not read stdin: for running in the background (udp_server.ts &)
  --help               show this help

A datagram is one message: at most ${MAX_BUFFER_SIZE} bytes, a trailing "\\n" optional.
Lines typed here go to every peer as "<server> text". Console commands:
  /list   show the peers     /kick ID or NAME   forget one
  /quit   shut down          /help              all the console commands
In chat mode, answers to senders not in the room (not allowed, server full, a wrong
password, a bad datagram) are limited to ${STRANGER_ANSWERS_PER_SECOND} a second in all, so a forged source
address cannot make the server an amplifier; a welcome makes the sender a peer (at most
--max-peers at once). Echo mode answers every datagram, a bad one with its error: it is
a reflector by nature, for tests and tools on trusted networks.
Each log line begins with the time (ISO 8601, UTC).`;

export const DEFAULT_PEER_TIMEOUT_S = 300;
export const DEFAULT_MAX_PEERS = 1000;
/**
 * The receive buffer: the largest UDP payload (65,507 bytes over IPv4, 65,527
 * over IPv6) fits. Linux cuts a datagram to the buffer without saying so, so a
 * 256-byte buffer could not tell a 256-byte datagram from a 60 KB one.
 */
export const RECEIVE_BUFFER_SIZE = 65_535;
/** How the log marks an answer to a stranger that the budget did not allow. */
const OVER_BUDGET = ` (not answered: over ${STRANGER_ANSWERS_PER_SECOND} a second)`;

export interface UdpServerOptions {
  host?: string;
  port?: number;
  mode?: Mode;
  /** A peer silent for this long is forgotten (announced as "left (idle timeout)"). */
  peerTimeoutMs?: number;
  maxPeers?: number;
  /** Who may send: --allow, --deny, --max-per-address (access.ts). */
  access?: AccessOptions;
  /** The room's password (chat mode only): a newcomer's first datagram must be /pass PASSWORD. */
  password?: Password;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
  /** Where the room's events pass (room.ts); closed at the end of the shutdown. */
  seam?: RoomSeam;
}

/** A running UDP server. `shutdown()` tells every peer "* server shutting down" and closes the socket. */
export interface UdpServer extends ConsoleServer {
  addr: Deno.NetAddr;
  /** Peers in the table (never more than maxPeers). */
  readonly peerCount: number;
}

// Sources whose spelled-out address is kept (udp_server's sourceOf).
const MAX_SOURCES = 4096;

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
  const log = options.log ?? ((line: string) => console.log(line));

  // Always name the host: Deno's default for datagrams is 0.0.0.0, every interface.
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
  });
  const addr = socket.addr as Deno.NetAddr;
  const outbox = new Outbox(socket, log);
  // Wrong passwords by address (an IPv6 /64), whatever port they come from (auth.ts).
  const passwordTries = options.password && new PasswordTries(options.password);
  const room = new Room({
    noun: "peer",
    chat: mode === "chat",
    maxMembers: options.maxPeers ?? DEFAULT_MAX_PEERS,
    // UDP has no close: a peer that falls silent is the only end there is.
    idleTimeoutMs: mode === "chat" ? options.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_S * 1000 : 0,
    password: passwordTries,
    log,
    onQuit: () => shutdown(),
    seam: options.seam,
  });
  // Who may send (access.ts): checked for each datagram from an address not
  // in the room, whose answers come out of one small budget a second.
  const access = new AccessControl(options.access ?? {}, "peer");
  const strangerAnswers = new AnswerBudget();
  /**
   * The peers in the room by "host:port": over UDP an address is a peer's
   * identity. The key is formatAddress()'s one spelling of the address, the one
   * the log and /list show: an IPv4 peer of a socket on :: (::ffff:127.0.0.1 to
   * Deno) is 127.0.0.1:PORT. Replies go to the address as received (`from`).
   */
  const peers = new Map<string, Peer>();
  let shuttingDown = false;
  const finished = Promise.withResolvers<void>();

  /**
   * Each source's address as formatAddress() spells it, and its log line's
   * start, by port: made once per source, not once per datagram (a peer keeps
   * its port). At most MAX_SOURCES are kept; then they are made again.
   */
  const sources = new Map<number, { hostname: string; address: string; logPrefix: string }>();
  function sourceOf(from: Deno.NetAddr) {
    let source = sources.get(from.port);
    if (source === undefined || source.hostname !== from.hostname) {
      if (sources.size >= MAX_SOURCES) sources.clear();
      const address = formatAddress(from);
      source = { hostname: from.hostname, address, logPrefix: `datagram from ${address}: ` };
      sources.set(from.port, source);
    }
    return source;
  }

  async function receiveLoop(): Promise<void> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (!shuttingDown) {
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        // recvfrom: one whole datagram and the address it came from.
        const [datagram, source] = await socket.receive(buffer);
        bytes = datagram;
        from = source as Deno.NetAddr;
      } catch (error) {
        if (outbox.closed) return;
        // An ICMP error for an earlier send can surface here; it ends nothing.
        log(`receive failed: ${errorText(error)}`);
        continue;
      }
      if (shuttingDown) continue;
      const source = sourceOf(from);
      const address = source.address;
      log(`${source.logPrefix}${bytes.length} bytes`);
      // Handled one at a time, and what one datagram makes the room send is
      // sent before the next is read: the kernel's socket buffer is the only
      // queue of input, and it is bounded.
      if (mode === "echo") {
        // The echo itself is awaited here, not in a function of its own: each
        // async layer is a promise and a turn more per datagram (issue 15).
        if (handleEcho(from, address, bytes)) await outbox.sendNow(from, bytes);
      } else handleChat(from, address, bytes);
      if (outbox.busy) await outbox.idle();
    }
  }

  /**
   * Echo: a good datagram goes back byte for byte, "\n" or not; nothing else
   * is sent. True when `bytes` is to be sent back as it is (sendto, straight
   * back to the address it came from: an echo is never larger than what came);
   * otherwise the error is queued in the outbox.
   */
  function handleEcho(from: Deno.NetAddr, address: string, bytes: Uint8Array): boolean {
    const refusal = access.refusal(from.hostname);
    if (refusal !== undefined) {
      answerStranger(from, address, refusal);
      return false;
    }
    const checked = checkDatagram(bytes);
    // An echo service answers every datagram, a bad one with its error (the
    // sweep over every size relies on it): like the echo itself, a reflector
    // by nature, which is why echo mode is for tests and tools, not a LAN.
    if ("error" in checked) {
      refuse(from, address, bytes, checked.error);
      return false;
    }
    return true;
  }

  function handleChat(from: Deno.NetAddr, address: string, bytes: Uint8Array): void {
    let peer = peers.get(address);
    if (peer !== undefined) room.touch(peer.member!);
    else {
      const refusal = access.refusal(from.hostname);
      if (refusal !== undefined) return answerStranger(from, address, refusal);
    }
    // A member's bad datagram is always answered; a stranger's only within the budget.
    const reject = (error: string) =>
      peer === undefined
        ? answerStranger(from, address, error)
        : refuse(from, address, bytes, error);
    const checked = checkDatagram(bytes);
    if ("error" in checked) return reject(checked.error);
    if (checked.text.includes(0x0a)) return reject(ONE_LINE_PER_DATAGRAM);
    const line = decodeUtf8(checked.text);
    if (peer === undefined) {
      // With a password, a newcomer's first datagram must be /pass PASSWORD:
      // until it is, the server keeps nothing of it.
      const authenticated = passwordTries !== undefined;
      if (authenticated && !passwordAccepted(from, address, line)) return;
      // A newcomer joins on its first good datagram; when that is a valid
      // `/nick NAME`, it joins under that name, so others see one notice.
      const command = readCommand(line);
      const wanted = command?.name === "/nick" ? command.argument : undefined;
      peer = new Peer(from, address, outbox, log, peers, access);
      const member = room.join(peer, wanted, authenticated);
      // A refusal of the room's (server full, room unavailable) answers a
      // stranger too: within the budget. A member's welcome goes out at once.
      const refusals = peer.joined(member);
      if (member === undefined) {
        for (const refusal of refusals) {
          if (sendToStranger(from, refusal)) continue;
          log(`not answered ${address}: over ${STRANGER_ANSWERS_PER_SECOND} a second`);
        }
        return;
      }
      peers.set(address, peer);
      access.take(from.hostname);
      log(`joined ${address} id=${member.id} ${member.name}`);
      // A first "/nick NAME" that was granted has named the newcomer already;
      // any other is answered below as over TCP (taken, reserved, invalid).
      const granted = wanted !== undefined && nameError(wanted) === undefined &&
        member.name === wanted.normalize("NFC");
      // A claim Redis must answer (a shared room): the room answers it when it settles.
      if (granted || authenticated || room.renaming(member)) return;
    }
    room.hear(peer.member!, line);
  }

  function refuse(from: Deno.NetAddr, address: string, bytes: Uint8Array, error: string): void {
    log(`refused ${address}: ${error.slice("ERR ".length)} (${bytes.length} bytes)`);
    outbox.send(from, encodeLine(error));
  }

  /**
   * Answers a sender not in the room with one line, if this second's budget
   * allows (a forged source must not make the server an amplifier); logs it
   * either way, with the datagram's size if given. The line never holds what
   * the sender sent.
   */
  function answerStranger(from: Deno.NetAddr, address: string, error: string, size?: number) {
    const answered = sendToStranger(from, encodeLine(error));
    const sized = size === undefined ? "" : ` (${size} bytes)`;
    log(`refused ${address}: ${error.slice("ERR ".length)}${sized}${answered ? "" : OVER_BUDGET}`);
  }

  /**
   * The one way a line goes to an address not in the room: sent if this
   * second's {@linkcode AnswerBudget} allows, else dropped. True if sent.
   */
  function sendToStranger(to: Deno.NetAddr, line: Uint8Array): boolean {
    if (!strangerAnswers.take()) return false;
    outbox.send(to, line);
    return true;
  }

  /**
   * A newcomer's first datagram in a room with a password: `/pass PASSWORD`
   * with the right one lets it in; anything else is refused with one line.
   * Wrong tries count by IP address (auth.ts); the password is never logged.
   */
  function passwordAccepted(from: Deno.NetAddr, address: string, line: string): boolean {
    const given = passwordIn(line);
    if (given === undefined || given === "") {
      answerStranger(from, address, given === undefined ? say.passwordFirst : say.passUsage);
      return false;
    }
    const verdict = passwordTries!.check(from.hostname, given);
    if (verdict.kind === "right") {
      log(`password accepted from ${address}`);
      return true;
    }
    // Locked out (not even checked): told so, within the budget like any refusal.
    if (verdict.kind === "locked") {
      answerStranger(from, address, lockoutLine(verdict));
      return false;
    }
    const locked = `address ignored for ${PASSWORD_LOCKOUT_MS / 1000} s`;
    answerStranger(
      from,
      address,
      verdict.tries < MAX_PASSWORD_TRIES
        ? say.wrongPassword(verdict.tries, MAX_PASSWORD_TRIES)
        : say.lastWrongPassword(MAX_PASSWORD_TRIES, locked),
    );
    return false;
  }

  async function shutdown(): Promise<void> {
    if (shuttingDown) return finished.promise;
    shuttingDown = true; // datagrams that arrive from here on are not handled
    log("shutting down");
    room.shutdown(); // each peer is sent "* server shutting down"
    // Sends on loopback or a LAN finish at once; nobody answers, so nothing to wait for.
    await outbox.idle();
    outbox.close();
    socket.close(); // also ends the pending receive()
    await options.seam?.close?.(); // a shared room's seam takes its peers' leaves to Redis first
    finished.resolve();
  }

  receiveLoop().catch((error) => {
    log(`receive loop failed: ${errorText(error)}`);
    shutdown();
  });
  return {
    addr,
    console: (line) => room.console(line),
    shutdown,
    finished: finished.promise,
    get shuttingDown() {
      return shuttingDown;
    },
    get peerCount() {
      return room.size;
    },
  };
}

/**
 * The datagrams waiting to be sent, one `send()` at a time. The receive loop
 * waits for it to empty before reading the next datagram, so it holds at
 * most what one datagram, console line or idle sweep makes the room send (a
 * line to each peer, or a `/list`): bounded by the peer table.
 */
class Outbox {
  readonly #socket: Deno.DatagramConn;
  readonly #log: (line: string) => void;
  #queue: { to: Deno.NetAddr; bytes: Uint8Array }[] = [];
  #sending?: Promise<void>;
  #closed = false;

  constructor(socket: Deno.DatagramConn, log: (line: string) => void) {
    this.#socket = socket;
    this.#log = log;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues one datagram for `to`. */
  send(to: Deno.NetAddr, bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push({ to, bytes });
    this.#sending ??= this.#sendAll();
  }

  /** Sends one datagram now (echo's path: nothing else is ever queued in echo mode). */
  async sendNow(to: Deno.NetAddr, bytes: Uint8Array): Promise<void> {
    try {
      await this.#socket.send(bytes, to);
    } catch (error) {
      // One peer's bad address (or a closed socket at shutdown) must not stop the others.
      if (!this.#closed) this.#log(`send to ${formatAddress(to)} failed: ${errorText(error)}`);
    }
  }

  /** True while datagrams are queued or being sent. */
  get busy(): boolean {
    return this.#sending !== undefined;
  }

  /** Resolves when everything queued has been sent. */
  idle(): Promise<void> {
    return this.#sending ?? Promise.resolve();
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  async #sendAll(): Promise<void> {
    while (this.#queue.length > 0) {
      const { to, bytes } = this.#queue.shift()!;
      await this.sendNow(to, bytes);
    }
    this.#sending = undefined;
  }
}

/**
 * A peer: an address the server has heard from, in the room as a member. No
 * connection to end when it leaves: the notice is the whole goodbye, and it
 * may be lost.
 */
class Peer implements MemberLink {
  member?: Member;
  /**
   * What the room tells it while deciding whether to let it in, held until
   * {@linkcode joined}: a stranger may only be answered within the budget.
   */
  #beforeJoin: Uint8Array[] | undefined = [];
  readonly #to: Deno.NetAddr;
  readonly #address: string;
  readonly #outbox: Outbox;
  readonly #log: (line: string) => void;
  readonly #peers: Map<string, Peer>;
  /** Counts the peers from each IP address (--max-per-address). */
  readonly #access: AccessControl;

  constructor(
    to: Deno.NetAddr,
    address: string,
    outbox: Outbox,
    log: (line: string) => void,
    peers: Map<string, Peer>,
    access: AccessControl,
  ) {
    this.#to = to;
    this.#address = address;
    this.#outbox = outbox;
    this.#log = log;
    this.#peers = peers;
    this.#access = access;
  }

  get address(): string {
    return this.#address;
  }

  get host(): string {
    return this.#to.hostname;
  }

  /** One line, one datagram: a 1000-line /list in one datagram would pass the UDP maximum. */
  deliver(line: Uint8Array): void {
    if (this.#beforeJoin !== undefined) this.#beforeJoin.push(line);
    else this.#outbox.send(this.#to, line);
  }

  /**
   * The room has decided. A member is sent what it was told (its welcome: a
   * membership, bounded by --max-peers); for a sender turned away, the lines
   * are returned, for the transport to send within the strangers' budget.
   */
  joined(member: Member | undefined): Uint8Array[] {
    const lines = this.#beforeJoin ?? [];
    this.#beforeJoin = undefined;
    this.member = member;
    if (member === undefined) return lines;
    for (const line of lines) this.#outbox.send(this.#to, line);
    return [];
  }

  left(cause: string, notice: Uint8Array | undefined): void {
    this.#peers.delete(this.#address);
    this.#access.release(this.#to.hostname);
    this.#log(`left ${this.#address} id=${this.member!.id} ${this.member!.name} (${cause})`);
    if (notice !== undefined) this.#outbox.send(this.#to, notice);
  }
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...SERVER_FLAGS,
    "peer-timeout": { type: "string", default: String(DEFAULT_PEER_TIMEOUT_S) },
    "max-peers": { type: "string", default: String(DEFAULT_MAX_PEERS) },
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
  if (listen.reusePort) {
    // Deno 2.9.6's listenDatagram takes reuseAddress (SO_REUSEADDR on Linux),
    // not reusePort: a second socket then binds, but the newest takes every
    // datagram and the others none, silently. node:dgram's reusePort fails
    // with EADDRINUSE. tests/reuse_port_test.ts fails when Deno can share one.
    throw new UsageError(
      "--reuse-port works over TCP only: Deno cannot share a UDP port (no SO_REUSEPORT " +
        "for datagram sockets), so run one udp_server.ts per port",
    );
  }
  const options: UdpServerOptions = {
    ...listen,
    peerTimeoutMs: parseSeconds("--peer-timeout", flags["peer-timeout"]) * 1000,
    maxPeers: parseInteger("--max-peers", flags["max-peers"], 1, 1_000_000),
    access: parseAccessFlags(flags),
  };
  if (listen.mode === "echo" && (options.access?.maxPerAddress ?? 0) > 0) {
    throw new UsageError("--max-per-address counts peers: --mode echo keeps none");
  }
  options.password = await readPasswordFlag("udp_server.ts", flags["password-file"], listen.mode);
  const redis = parseRedisFlags(flags, listen.mode);
  return await runServer(
    "udp_server.ts",
    "udp",
    listen,
    async (log) => {
      const seam = redis && await connectRoomSeam("udp_server.ts", redis, log);
      return startUdpServer({ ...options, seam, log });
    },
    { console: !flags["no-console"] },
  );
}

if (import.meta.main) runMain("udp_server.ts", () => main(Deno.args));
