/**
 * The chat room that both servers share, with no sockets in it: members and
 * their names, the client and console commands, announcements, the relay, the
 * idle sweep and the shutdown notice.
 *
 * A transport (TCP in `server.ts`, UDP in `udp_server.ts`) owns the sockets. It
 * hands the room each member as a {@linkcode MemberLink}: a way to deliver a
 * line, and a way to be told that the member has left. The room never waits on
 * a member: `deliver` queues or sends and returns.
 *
 * Every event the room produces for the whole room (a chat line, a join, a
 * leave, a rename, a kick, a name claim) passes through one {@linkcode RoomSeam}.
 * The default, {@linkcode LocalSeam}, hands events straight back to this room;
 * a seam backed by Redis can carry them to the rooms of other processes.
 *
 * A room with a password (`--password-file`) keeps each newcomer waiting
 * until it sends `/pass PASSWORD`: a waiting member counts against the
 * member limit and the idle timeout like any other, but it is told only that
 * a password is needed, sees no line of the room, is not announced, is not
 * in a member's `/list`, and can send nothing to anyone. The third wrong
 * password ends it. (A transport that has checked the password itself, UDP
 * on a newcomer's first datagram, joins it as in at once.)
 *
 * @example
 * ```ts
 * import { Room } from "./room.ts";
 * const room = new Room({ noun: "client" });
 * const lines: string[] = [];
 * const link = {
 *   address: "127.0.0.1:5000",
 *   deliver: (line: Uint8Array) => lines.push(new TextDecoder().decode(line)),
 *   left() {},
 * };
 * const alice = room.join(link)!;
 * room.hear(alice, "/nick alice");
 * // lines: ["* welcome, you are user1 (type /help for commands)\n", "* user1 is now alice\n"]
 * ```
 * @module
 */
import { encodeLine, joinBytes, sanitize } from "./line_buffer.ts";
import {
  defaultName,
  listLine,
  MAX_PASSWORD_TRIES,
  messageText,
  nameError,
  nameKey,
  parseCommand,
  parsePrivate,
  PASS_COMMAND,
  passwordIn,
  readCommand,
  say,
  SERVER_NAME,
} from "./protocol.ts";
import { lockoutLine, type PasswordTries } from "./auth.ts";

/**
 * Joins, leaves and renames are announced only while the room has at most
 * this many members (counted after the change): each announcement goes to
 * everyone, so a crowd of N arriving would cost N * N / 2 notices (12.5
 * million for 5,000 members).
 */
export const ANNOUNCE_LIMIT = 100;

/**
 * What a transport gives the room for one member.
 *
 * `deliver` takes one encoded line (UTF-8 text and its `"\n"`); it may be
 * shared with other members, so it must not be changed. It must not block; it
 * may call {@linkcode Room.leave} for this member (a slow consumer), which the
 * room then defers until the line has gone to everyone else.
 *
 * `left` is called exactly once, when the member has left the room, with the
 * cause (`quit`, `eof`, `kicked`, `idle timeout`, ...) and the notice to tell
 * it, if any (`* bye`); the transport then ends the member's connection.
 */
export interface MemberLink {
  /** The member's address, as `host:port` (shown in `/list` and the log). */
  readonly address: string;
  /** The member's IP address alone, by which wrong passwords count (default: `address`). */
  readonly host?: string;
  deliver(line: Uint8Array): void;
  /**
   * Several whole lines at once, for a transport whose messages need not be
   * one line each (TCP). Without it the room delivers them line by line.
   */
  deliverBlock?(block: Uint8Array): void;
  left(cause: string, notice: Uint8Array | undefined): void;
  /** True while the transport holds the member's input back (flood control): it is not idle. */
  readonly paced?: boolean;
}

/**
 * A member of the room. The room changes `name`, `lastHeardAt`, `admitted`
 * and `wrongPasswords`; the rest is fixed.
 */
export interface Member {
  readonly id: number;
  name: string;
  /** Times on the room's clock, in milliseconds. */
  readonly connectedAt: number;
  lastHeardAt: number;
  readonly link: MemberLink;
  /** Set when the member has left (or is leaving, after a broadcast in progress). */
  gone: boolean;
  /** In the room: always, without a password; once it gave the password, with one. */
  admitted: boolean;
  /** Wrong passwords it gave (it is closed when its address reaches MAX_PASSWORD_TRIES). */
  wrongPasswords: number;
}

/** Who an event is about: a member's id and name (`id` 0 is the server console). */
export interface MemberRef {
  id: number;
  name: string;
}

/**
 * Every event that crosses the {@linkcode RoomSeam}: what the whole room,
 * in every process it spans, must see.
 */
export type RoomEvent =
  | { kind: "line"; from: MemberRef; text: string; action?: boolean }
  | { kind: "private"; from: MemberRef; to: number; text: string }
  | {
    kind: "join";
    member: MemberRef;
    /** The member's address; the seam's instance and wall-clock time of the join (ms). */
    address?: string;
    instance?: number;
    since?: number;
    /** From the seam's snapshot of who is in the room already: known, not announced. */
    seeded?: boolean;
    /**
     * Registered again by its instance after the others took it for dead
     * (reaped while stalled, or Redis restarted empty): announced only where
     * it was not known, and its name is the one it could claim back.
     */
    again?: boolean;
  }
  | { kind: "leave"; member: MemberRef; cause: string }
  | { kind: "rename"; member: MemberRef; from: string }
  | { kind: "kick"; id: number }
  /** From the seam to this process's members alone (Redis lost, or back): a line of `say`. */
  | { kind: "notice"; line: string }
  /**
   * From the seam alone, after it missed events: every member of the room
   * as its registry holds them now (seeded joins). The other processes'
   * members are replaced by these, unannounced; this process's are skipped.
   */
  | { kind: "members"; members: Extract<RoomEvent, { kind: "join" }>[] };

/**
 * The one narrow interface between a room and the rest of the room beyond
 * this process. Modelled on Redis's publish path, which delivers locally and
 * then propagates to the cluster through one hook
 * (`pubsubPublishMessageAndPropagateToCluster`, src/pubsub.c).
 *
 * - `open(apply)` is called once by the room: from then on the seam calls
 *   `apply` for every event of the room, its own included, in room order.
 * - `publish(event)` sends an event to the whole room. The room acts on its
 *   own events only when `apply` brings them back, so every process sees the
 *   same events in the same order.
 * - `claimName(key, id)` claims a name key ({@linkcode nameKey}) for member
 *   `id`, room-wide; `true` if the key was free or already that member's.
 *   A seam that must ask another process answers with a promise (rejected
 *   when it cannot ask); the room holds the member's later lines until it
 *   settles, so they keep their order. `releaseName(key, id)` gives it back
 *   (only the holder's release counts).
 * - `publish` may return `false`: the event was not sent (the seam's queue
 *   is full while its link is down), and the room tells the sender so.
 * - A seam shared by several processes has an `instance` number (shown in
 *   `/list`, stamped on joins), hands out room-wide unique member ids with
 *   `newId()`, and is closed once by the server with `close()`.
 */
export interface RoomSeam {
  readonly instance?: number;
  open(apply: (event: RoomEvent) => void): void;
  publish(event: RoomEvent): boolean | void;
  claimName(key: string, id: number): boolean | Promise<boolean>;
  releaseName(key: string, id: number): void;
  newId?(): number;
  close?(): Promise<void>;
}

/** The default seam: a room in one process. Events come straight back; claims live in a map. */
export class LocalSeam implements RoomSeam {
  #apply?: (event: RoomEvent) => void;
  #claims = new Map<string, number>();

  open(apply: (event: RoomEvent) => void): void {
    this.#apply = apply;
  }

  publish(event: RoomEvent): void {
    this.#apply?.(event);
  }

  claimName(key: string, id: number): boolean {
    const holder = this.#claims.get(key);
    if (holder !== undefined && holder !== id) return false;
    this.#claims.set(key, id);
    return true;
  }

  releaseName(key: string, id: number): void {
    if (this.#claims.get(key) === id) this.#claims.delete(key);
  }
}

/**
 * The room's clock: whole milliseconds of `performance.now()`, which never
 * goes back when the system clock is set back. Whole milliseconds are small
 * integers, which V8 keeps inside the member object (a fraction takes a
 * 16-byte box per field per member). Every read from a client touches its
 * member, and `performance.now()` is a call into the runtime (about 80 ns,
 * against 40 for `Date.now()`), so it is read at most once per millisecond of
 * `Date.now()`: the value is never more than about a millisecond old, and a
 * system clock set back or forward only makes it read again.
 */
export function monotonicMilliseconds(): number {
  const wall = Date.now();
  if (wall !== clockReadAt) {
    clockReadAt = wall;
    clockValue = Math.floor(performance.now());
  }
  return clockValue;
}
let clockReadAt = NaN;
let clockValue = 0;

/** Options of a {@linkcode Room}. */
export interface RoomOptions {
  /** What a member is called in counts and errors: "client" (TCP) or "peer" (UDP). */
  noun: "client" | "peer";
  /** `false` for an echo service: a registry only, with no notices and no relay (default true). */
  chat?: boolean;
  /** Members at once; a newcomer beyond gets `ERR server full` (default 1000). */
  maxMembers?: number;
  /** A member that sends nothing for this many milliseconds leaves; 0 = never (default 0). */
  idleTimeoutMs?: number;
  /** Milliseconds, never going back (default: whole milliseconds of `performance.now()`). */
  clock?: () => number;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
  /** Called for the console's `/quit`: the transport shuts the server down. */
  onQuit?: () => void;
  /** Where room events pass (default: a new {@linkcode LocalSeam}). */
  seam?: RoomSeam;
  /**
   * The room's password, with the server's one table of wrong tries by
   * address (auth.ts): newcomers wait until they give it (chat rooms only).
   */
  password?: PasswordTries;
}

// What a member is told when it leaves for each cause; other causes (eof,
// reset, slow consumer) leave nobody to tell or nothing to tell it.
const NOTICES: Record<string, Uint8Array> = {
  quit: encodeLine(say.bye),
  "idle timeout": encodeLine(say.idle),
  kicked: encodeLine(say.kicked),
  shutdown: encodeLine(say.shuttingDown),
  "wrong password": encodeLine(say.lastWrongPassword(MAX_PASSWORD_TRIES, "closing")),
};
const HELP = say.help.map(encodeLine);
/** How the console's /list marks members waiting for the password. */
const WAITING_MARK = "waiting for the password";
const SERVER: MemberRef = { id: 0, name: SERVER_NAME };
/**
 * Lines a member may send while its `/nick` waits for a room-wide name claim
 * (one Redis round trip); they are handled in order once it settles, and
 * those past the bound are refused, never dropped silently.
 */
export const MAX_HELD_LINES = 64;

/** A member of another process's room, as its join, rename and leave events tell it. */
interface RemoteMember {
  readonly id: number;
  name: string;
  readonly address: string;
  readonly instance?: number;
  /** On this room's clock, as near as the event's wall-clock time tells. */
  readonly connectedAt: number;
}

/** The console's `/help`, a log line each, in the room's noun; an echo room relays no text. */
function consoleHelp(noun: "client" | "peer", chat: boolean): string[] {
  const text = chat
    ? [
      `* TEXT              send TEXT to every ${noun} as <server> TEXT`,
      "* //TEXT            send /TEXT (a line that begins with /: the first / is dropped)",
    ]
    : [`* (echo mode: lines typed here are not sent to ${noun}s)`];
  return [
    ...text,
    `* /list             the ${noun}s: id, name, address, age and idle seconds`,
    `* /kick ID or NAME  ${noun === "client" ? "disconnect" : "forget"} one (a number is an id)`,
    "* /quit             shut the server down",
    "* /help             this help",
  ];
}

/**
 * The chat room. State lives here alone: the members by id, the name index,
 * and the leaves held back while a line is being delivered.
 *
 * Transports call {@linkcode join}, {@linkcode hear} (a sanitised line from a
 * member), {@linkcode touch} (the member was heard from), {@linkcode leave}
 * (the connection ended) and {@linkcode console}; the room calls the member's
 * {@linkcode MemberLink}.
 */
export class Room {
  readonly #noun: "client" | "peer";
  readonly #chat: boolean;
  readonly #maxMembers: number;
  readonly #idleTimeoutMs: number;
  readonly #clock: () => number;
  readonly #log: (line: string) => void;
  readonly #onQuit: () => void;
  readonly #seam: RoomSeam;
  readonly #password?: PasswordTries;
  /** Every member in the room, by id, in order of arrival (those waiting for the password too). */
  readonly #members = new Map<number, Member>();
  /**
   * Members who chose their names, by {@linkcode nameKey}. Default names
   * (`user<id>`) are reserved, so no name can clash with one: they are not
   * indexed, which saves an entry per idle member.
   */
  readonly #byName = new Map<string, Member>();
  /** Members of the other processes sharing the room through the seam, by id and by name key. */
  readonly #remote = new Map<number, RemoteMember>();
  readonly #remoteByName = new Map<string, RemoteMember>();
  /** Lines heard from a member while its name claim is pending, to be handled once it settles. */
  readonly #held = new Map<Member, string[]>();
  #nextId = 1;
  /** Nonzero while lines are being delivered: leaves wait in #deferred until it is done. */
  #delivering = 0;
  #deferred: { member: Member; cause: string }[] = [];
  #idleSweep?: ReturnType<typeof setInterval>;
  /** Inside {@linkcode hearAll}: lines for everyone are held in `#burst`. */
  #hearing = false;
  /** Lines held for every member but `exceptId`, oldest first. */
  #burst?: { exceptId: number | undefined; lines: Uint8Array[] };
  #shuttingDown = false;

  constructor(options: RoomOptions) {
    this.#noun = options.noun;
    this.#chat = options.chat ?? true;
    this.#maxMembers = options.maxMembers ?? 1000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 0;
    this.#clock = options.clock ?? monotonicMilliseconds;
    this.#log = options.log ?? ((line) => console.log(line));
    this.#onQuit = options.onQuit ?? (() => {});
    this.#seam = options.seam ?? new LocalSeam();
    this.#seam.open((event) => this.#apply(event));
    // Only a chat room has a room to keep waiting members out of.
    if (options.password !== undefined && !this.#chat) {
      throw new RangeError("a password needs a chat room");
    }
    this.#password = options.password;
    if (this.#idleTimeoutMs > 0) {
      const every = Math.min(1000, Math.max(10, this.#idleTimeoutMs / 4));
      this.#idleSweep = setInterval(() => this.sweep(), every);
    }
  }

  /** Members in the room. */
  get size(): number {
    return this.#members.size;
  }

  /**
   * True while `member` waits for a room-wide name claim (a `/nick`, or the
   * name it joined with): the room answers it when the claim settles.
   */
  renaming(member: Member): boolean {
    return this.#held.has(member);
  }

  /** The room's clock, for transports that keep times of their own (flood control). */
  now(): number {
    return this.#clock();
  }

  /**
   * Adds a member: named `name` if that is a valid name nobody holds,
   * otherwise `user<id>`. In a chat room it is welcomed and the others are
   * told. A full room tells the newcomer `ERR server full` and returns
   * `undefined`; the transport then ends the connection.
   *
   * In a room with a password, the member waits, told only
   * `* password needed: send /pass PASSWORD`, unless `authenticated` says
   * the transport has checked the password already; a waiting member keeps
   * its default name until it is in.
   */
  join(link: MemberLink, name?: string, authenticated = false): Member | undefined {
    if (this.#members.size >= this.#maxMembers) {
      this.#log(
        `refused ${link.address}: ${say.serverFull(this.#maxMembers, this.#noun).slice(4)}`,
      );
      this.#tell(link, encodeLine(say.serverFull(this.#maxMembers, this.#noun)));
      return undefined;
    }
    const id = this.#seam.newId?.() ?? this.#nextId++;
    const now = this.#clock();
    const member: Member = {
      id,
      name: defaultName(id),
      connectedAt: now,
      lastHeardAt: now,
      link,
      gone: false,
      admitted: this.#password === undefined || authenticated,
      wrongPasswords: 0,
    };
    if (!member.admitted) {
      this.#members.set(id, member);
      this.#tell(link, encodeLine(say.passwordNeeded));
      return member;
    }
    const claimed = name !== undefined && nameError(name) === undefined
      ? this.#claim(member, name)
      : false;
    if (claimed === true) {
      // Canonically equivalent spellings are one name: it is kept composed (UAX #15).
      member.name = name!.normalize("NFC");
      this.#byName.set(nameKey(name!), member);
    }
    this.#members.set(id, member);
    if (this.#chat) {
      if (!this.#publishJoin(member)) {
        this.#members.delete(id);
        if (claimed === true) this.#byName.delete(nameKey(member.name));
        if (claimed !== false) this.#releaseClaim(member, name!, claimed);
        this.#log(`refused ${link.address}: room unavailable (its queue to Redis is full)`);
        this.#tell(link, encodeLine(say.roomUnavailable));
        return undefined;
      }
      this.#tell(link, encodeLine(say.welcome(member.name)));
    }
    // A claim another process must answer: the member is in under its default
    // name now, and renamed when the claim is granted, as if it had sent /nick.
    if (claimed instanceof Promise) this.#awaitClaim(member, name!, claimed);
    return member;
  }

  /** The member was heard from now: it is not idle. */
  touch(member: Member): void {
    member.lastHeardAt = this.#clock();
  }

  /**
   * Handles the lines of one read from a member, as {@linkcode hear} would
   * one after the other, but the lines the room relays meanwhile to the same
   * members go out together when it returns: one block for each member whose
   * transport takes blocks (TCP), instead of a line at a time. In a room of
   * 100 that is 100 deliveries for a read of 16 lines instead of 1,600 (issue
   * 15: the deliveries were the chat relay's largest cost of its own). The
   * order every member sees is the same as with `hear`.
   */
  hearAll(member: Member, lines: readonly string[]): void {
    if (lines.length === 1) return this.hear(member, lines[0]);
    this.#hearing = true;
    try {
      for (const line of lines) this.hear(member, line);
    } finally {
      this.#hearing = false;
      this.#flushBurst();
    }
  }

  /**
   * Handles one line from a member, already checked (at most 255 bytes of
   * UTF-8) but not yet sanitised: a command ({@linkcode readCommand}), or a
   * line for everyone else. A line that is empty once sanitised is relayed
   * to nobody.
   */
  hear(member: Member, line: string): void {
    if (member.gone) return;
    const held = this.#held.get(member);
    if (held !== undefined) {
      // Its /nick is pending: this line waits, so it follows the rename.
      if (held.length >= MAX_HELD_LINES) {
        return this.#tell(member.link, encodeLine(say.tooManyWaiting(MAX_HELD_LINES)));
      }
      held.push(line);
      return;
    }
    if (!member.admitted) return this.#hearWaiting(member, line);
    const command = readCommand(line);
    if (command === undefined) {
      const message = sanitize(messageText(line)); // "//text" is the text "/text"
      if (message === "") return;
      const from = { id: member.id, name: member.name };
      this.#send(member, { kind: "line", from, text: message });
      return;
    }
    switch (command.name) {
      case "/nick":
        return this.#rename(member, command.argument);
      case "/list":
        return this.#list((line) => this.#tell(member.link, encodeLine(line)), false);
      case "/msg":
        return this.#private(member, command.argument);
      case "/me": {
        if (command.argument === "") return this.#tell(member.link, encodeLine(say.meUsage));
        const from = { id: member.id, name: member.name };
        return this.#send(member, { kind: "line", from, text: command.argument, action: true });
      }
      case "/quit":
        return this.leave(member, "quit");
      case "/help":
        for (const line of HELP) this.#tell(member.link, line);
        return;
      case PASS_COMMAND:
        // Never logged or relayed: a member in already may still type its password.
        return this.#tell(member.link, encodeLine(say.alreadyIn));
      default:
        this.#tell(member.link, encodeLine(say.unknownCommand(command.name)));
    }
  }

  /**
   * A line from a member waiting for the password: `/pass PASSWORD` and
   * `/quit` are all it can do. Neither the line nor the password is logged.
   */
  #hearWaiting(member: Member, line: string): void {
    const tell = (text: string) => this.#tell(member.link, encodeLine(text));
    const given = passwordIn(line);
    if (given === undefined) {
      return readCommand(line)?.name === "/quit"
        ? this.leave(member, "quit")
        : tell(say.passwordFirst);
    }
    if (given === "") return tell(say.passUsage);
    const { address } = member.link;
    // Wrong tries count by the member's address, across connections (auth.ts).
    const verdict = this.#password!.check(member.link.host ?? address, given);
    if (verdict.kind === "locked") {
      const refusal = lockoutLine(verdict);
      this.#log(`refused ${address} id=${member.id}: ${refusal.slice("ERR ".length)}`);
      tell(refusal);
      return this.leave(member, "password lockout");
    }
    if (verdict.kind === "right") {
      member.admitted = true;
      this.#log(`password accepted from ${address} id=${member.id} ${member.name}`);
      if (!this.#publishJoin(member)) {
        this.#tell(member.link, encodeLine(say.roomUnavailable));
        return this.leave(member, "room unavailable");
      }
      this.#tell(member.link, encodeLine(say.welcome(member.name)));
      return;
    }
    member.wrongPasswords++;
    const { tries } = verdict; // its address's, this connection's and earlier ones'
    this.#log(
      `wrong password from ${address} id=${member.id} (${tries} of ${MAX_PASSWORD_TRIES} tries)`,
    );
    if (tries >= MAX_PASSWORD_TRIES) return this.leave(member, "wrong password");
    tell(say.wrongPassword(tries, MAX_PASSWORD_TRIES));
  }

  /**
   * The one place a member leaves: out of the registry and the name index,
   * the others told (unless the server is shutting down, when each gets the
   * shutdown notice instead), and the link's `left` called with the notice for
   * the cause. A member that leaves while a line is being delivered (a slow
   * consumer dropped by its own delivery) leaves once that delivery is done,
   * as Redis defers freeing a client in the middle of a fan-out
   * (`freeClientAsync`, src/networking.c). Leaving twice does nothing.
   */
  leave(member: Member, cause: string): void {
    if (member.gone) return;
    member.gone = true;
    if (this.#delivering > 0) {
      this.#deferred.push({ member, cause });
      return;
    }
    this.#remove(member, cause);
  }

  /**
   * Runs a line typed at the server's console: `/list`, `/kick ID` or
   * `/kick NAME`, `/quit`, `/help`, or (in a chat room) a line to everyone as
   * `<server> text`. Answers and errors go to the log, one line each.
   */
  console(line: string): void {
    const command = parseCommand(line);
    if (command === undefined) {
      if (!this.#chat) return this.#log(`echo mode: console lines are not sent to ${this.#noun}s`);
      const text = sanitize(messageText(line)); // "//text" is the text "/text"
      if (text !== "" && this.#seam.publish({ kind: "line", from: SERVER, text }) === false) {
        this.#log(say.notSent);
      }
      return;
    }
    switch (command.name) {
      case "/list":
        return this.#list(this.#log, true);
      case "/kick":
        return this.#kick(sanitize(command.argument));
      case "/quit":
        return this.#onQuit();
      case "/help":
        for (const help of consoleHelp(this.#noun, this.#chat)) this.#log(help);
        return;
      default:
        this.#log(`unknown console command ${command.name} (try /help)`);
    }
  }

  /**
   * The idle sweep: every member not heard from for the idle timeout, and
   * not held back by flood control, leaves as `idle timeout`. Runs on its own
   * timer; callable with any `now` for tests.
   */
  sweep(now: number = this.#clock()): void {
    if (this.#idleTimeoutMs <= 0) return;
    for (const member of [...this.#members.values()]) {
      if (member.link.paced !== true && now - member.lastHeardAt >= this.#idleTimeoutMs) {
        this.leave(member, "idle timeout");
      }
    }
  }

  /** Every member leaves with the shutdown notice; no leave is announced. */
  shutdown(): void {
    this.#shuttingDown = true;
    clearInterval(this.#idleSweep);
    for (const member of [...this.#members.values()]) this.leave(member, "shutdown");
  }

  // ---- events, as the seam brings them back

  #apply(event: RoomEvent): void {
    switch (event.kind) {
      case "line": {
        const relay = event.action
          ? say.action(event.from.name, event.text)
          : say.relay(event.from.name, event.text);
        this.#log(relay);
        return this.#deliverAll(encodeLine(relay), event.from.id);
      }
      case "private": {
        // Only the addressee's process holds it; elsewhere this is nothing.
        this.#tellMember(
          this.#members.get(event.to),
          encodeLine(say.private(event.from.name, event.text)),
        );
        return;
      }
      case "join":
        if (event.again) return this.#joinedAgain(event);
        // Our own members are in #members already; another process's are remembered.
        if (event.instance !== this.#seam.instance) this.#addRemote(event);
        if (event.seeded) return;
        return this.#announce(say.joined(event.member.name), event.member.id);
      case "leave": {
        // Ours and still here: the others took this process for dead (the seam's
        // reaper); the seam registers the member again, so nobody here saw it leave.
        if (this.#members.get(event.member.id)?.gone === false) return;
        const remote = this.#remote.get(event.member.id);
        if (remote !== undefined) {
          this.#remote.delete(remote.id);
          const key = nameKey(remote.name);
          if (this.#remoteByName.get(key) === remote) this.#remoteByName.delete(key);
        }
        // A server shutting down tells its own members why; it announces nobody's leave.
        if (this.#shuttingDown) return;
        return this.#announce(say.left(event.member.name, event.cause));
      }
      case "rename": {
        const remote = this.#remote.get(event.member.id);
        if (remote !== undefined) {
          const key = nameKey(remote.name);
          if (this.#remoteByName.get(key) === remote) this.#remoteByName.delete(key);
          remote.name = event.member.name;
          this.#remoteByName.set(nameKey(remote.name), remote);
        }
        return this.#announce(say.renamed(event.from, event.member.name), event.member.id);
      }
      case "kick": {
        const member = this.#members.get(event.id);
        if (member !== undefined) this.leave(member, "kicked");
        return;
      }
      case "notice":
        this.#log(event.line);
        return this.#deliverAll(encodeLine(event.line));
      case "members":
        this.#remote.clear();
        this.#remoteByName.clear();
        for (const join of event.members) {
          if (join.instance !== this.#seam.instance) this.#addRemote(join);
        }
        return;
    }
  }

  /**
   * A member registered again by its instance. Where it is known (its own
   * process; another that never saw it leave) nothing is announced but a
   * name it could not claim back, which its own member is told; elsewhere
   * it joins.
   */
  #joinedAgain(event: Extract<RoomEvent, { kind: "join" }>): void {
    const { id, name } = event.member;
    if (event.instance === this.#seam.instance) {
      const member = this.#members.get(id);
      if (member === undefined || member.gone || member.name === name) return;
      const old = member.name;
      if (this.#byName.get(nameKey(old)) === member) this.#byName.delete(nameKey(old));
      member.name = name;
      this.#log(`renamed ${member.link.address} id=${id} ${old} -> ${name} (name taken meanwhile)`);
      this.#tell(member.link, encodeLine(say.nameTaken(old)));
      this.#tell(member.link, encodeLine(say.renamed(old, name)));
      return this.#announce(say.renamed(old, name), id);
    }
    const remote = this.#remote.get(id);
    if (remote === undefined) {
      this.#addRemote(event);
      return this.#announce(say.joined(name), id);
    }
    if (remote.name === name) return;
    const old = remote.name;
    if (this.#remoteByName.get(nameKey(old)) === remote) this.#remoteByName.delete(nameKey(old));
    remote.name = name;
    if (name !== defaultName(id)) this.#remoteByName.set(nameKey(name), remote);
    this.#announce(say.renamed(old, name), id);
  }

  /** Remembers a member of another process (a join event, or one from the seam's snapshot). */
  #addRemote(event: Extract<RoomEvent, { kind: "join" }>): void {
    const ageMs = event.since === undefined ? 0 : Math.max(0, Date.now() - event.since);
    const remote: RemoteMember = {
      id: event.member.id,
      name: event.member.name,
      address: event.address ?? "?",
      instance: event.instance,
      connectedAt: this.#clock() - ageMs,
    };
    this.#remote.set(remote.id, remote);
    if (remote.name !== defaultName(remote.id)) {
      this.#remoteByName.set(nameKey(remote.name), remote);
    }
  }

  /**
   * Tells the room about a join, leave or rename, unless the room is too big
   * for that: the room counts every process's members.
   */
  #announce(text: string, exceptId?: number): void {
    if (this.#members.size + this.#remote.size <= ANNOUNCE_LIMIT) {
      this.#deliverAll(encodeLine(text), exceptId);
    }
  }

  /** Publishes a member's line; if the seam could not take it, the member is told. */
  #send(member: Member, event: RoomEvent): void {
    if (this.#seam.publish(event) === false) this.#tell(member.link, encodeLine(say.notSent));
  }

  /** Publishes a member's join: `false` if the seam could not take it. */
  #publishJoin(member: Member): boolean {
    return this.#seam.publish({
      kind: "join",
      member: { id: member.id, name: member.name },
      address: member.link.address,
      instance: this.#seam.instance,
    }) !== false;
  }

  /**
   * Delivers one line to every member but `exceptId`; leaves during it wait
   * until it is done. Within {@linkcode hearAll}, lines for the same members
   * are held and go out together ({@linkcode #flushBurst}).
   */
  #deliverAll(line: Uint8Array, exceptId?: number): void {
    if (this.#hearing) {
      const burst = this.#burst;
      if (burst !== undefined && burst.exceptId === exceptId) {
        burst.lines.push(line);
        return;
      }
      this.#flushBurst(); // and whatever its sending made the room announce
      this.#burst = { exceptId, lines: [line] };
      return;
    }
    this.#deliverEach([line], line, exceptId);
  }

  /**
   * Sends the lines held for one audience: as one block to each member whose
   * transport takes blocks, line by line to the others (a UDP peer: one
   * datagram a line). Done before anything else reaches a member, so the
   * room's order is kept.
   */
  #flushBurst(): void {
    // Sending may drop a slow consumer, whose leave is announced at once and,
    // within hearAll, held as a burst of its own: sent too, after this one.
    for (let burst = this.#burst; burst !== undefined; burst = this.#burst) {
      this.#burst = undefined;
      const { lines, exceptId } = burst;
      this.#deliverEach(lines, lines.length === 1 ? lines[0] : joinBytes(lines), exceptId);
    }
  }

  /** Delivers `lines` (whose bytes joined are `block`) to every member but `exceptId`. */
  #deliverEach(lines: Uint8Array[], block: Uint8Array, exceptId?: number): void {
    this.#delivering++;
    try {
      for (const member of this.#members.values()) {
        if (member.id === exceptId || member.gone || !member.admitted) continue;
        const link = member.link;
        if (lines.length === 1) link.deliver(block);
        else if (link.deliverBlock !== undefined) link.deliverBlock(block);
        else for (const line of lines) link.deliver(line);
      }
    } finally {
      this.#delivering--;
    }
    while (this.#delivering === 0 && this.#deferred.length > 0) {
      const { member, cause } = this.#deferred.shift()!;
      this.#remove(member, cause);
    }
  }

  /** Delivers one line to one member, after any lines held for everyone. */
  #tell(link: MemberLink, line: Uint8Array): void {
    this.#flushBurst();
    link.deliver(line);
  }

  /** {@linkcode #tell} for a member that may not be here. */
  #tellMember(member: Member | undefined, line: Uint8Array): void {
    if (member !== undefined) this.#tell(member.link, line);
  }

  #remove(member: Member, cause: string): void {
    this.#members.delete(member.id);
    const key = nameKey(member.name);
    if (this.#byName.get(key) === member) this.#byName.delete(key);
    this.#seam.releaseName(key, member.id);
    member.link.left(cause, this.#chat ? NOTICES[cause] : undefined);
    // A member that never got in was never announced: its leave is not either.
    // At a shutdown the leave is still published, for the other processes
    // sharing the room; this room announces none (#apply).
    if (this.#chat && member.admitted) {
      this.#seam.publish({ kind: "leave", member: { id: member.id, name: member.name }, cause });
    }
  }

  // ---- names and commands

  /**
   * Claims `name` for `member`: in this process's index and room-wide through
   * the seam, whose answer may be a promise (another process decides).
   */
  #claim(member: Member, name: string): boolean | Promise<boolean> {
    const holder = this.#byName.get(nameKey(name));
    if (holder !== undefined && holder !== member) return false;
    return this.#seam.claimName(nameKey(name), member.id);
  }

  /** Gives back a claim a member no longer needs, once it is known to be granted. */
  #releaseClaim(member: Member, name: string, claimed: boolean | Promise<boolean>): void {
    if (claimed === true) this.#seam.releaseName(nameKey(name), member.id);
    else if (claimed instanceof Promise) {
      claimed.then((granted) => granted && this.#seam.releaseName(nameKey(name), member.id))
        .catch(() => {}); // never granted: nothing to give back
    }
  }

  /**
   * Waits for a pending name claim: the member's lines meanwhile are held
   * (#held), then handled in order, a second /nick among them included. A
   * member that left meanwhile gives a granted claim back; a claim that
   * could not be asked (Redis away) leaves the name as it was, and says so.
   */
  #awaitClaim(member: Member, name: string, claimed: Promise<boolean>): void {
    this.#held.set(member, []);
    claimed.then((granted) => granted, () => undefined).then((granted) => {
      const held = this.#held.get(member) ?? [];
      this.#held.delete(member);
      if (member.gone) {
        if (granted === true) this.#seam.releaseName(nameKey(name), member.id);
        return;
      }
      if (granted === undefined) this.#tell(member.link, encodeLine(say.nameNotChanged));
      else this.#renamed(member, name, granted);
      for (let i = 0; i < held.length; i++) {
        const again = this.#held.get(member);
        if (again !== undefined) { // a later /nick is pending in turn: the rest wait for it
          again.push(...held.slice(i));
          break;
        }
        this.hear(member, held[i]);
      }
    });
  }

  /** `/msg NAME text`: the line goes to NAME alone; the sender hears only of failure. */
  #private(member: Member, argument: string): void {
    const tell = (line: string) => this.#tell(member.link, encodeLine(line));
    const message = parsePrivate(argument);
    if (message === undefined) return tell(say.msgUsage);
    const to = this.#find(message.to);
    // One waiting for the password is nobody yet: nothing reaches it.
    if (to === undefined || ("admitted" in to && !to.admitted)) {
      return tell(say.noSuchName(message.to));
    }
    const from = { id: member.id, name: member.name };
    this.#send(member, { kind: "private", from, to: to.id, text: message.text });
  }

  /**
   * The console's `/kick ID` or `/kick NAME`. A number is an id (a member
   * named with digits alone is kicked by its id); a name is found as `/msg`
   * finds it, by its key, so any spelling that is the same name will do.
   */
  #kick(target: string): void {
    if (target === "") return this.#log("usage: /kick ID or NAME (see /list)");
    const byId = /^\d+$/.test(target);
    const member = byId
      ? this.#members.get(Number(target)) ?? this.#remote.get(Number(target))
      : this.#find(target);
    if (member === undefined) {
      return this.#log(`no ${this.#noun} ${byId ? "with id" : "named"} ${target} (see /list)`);
    }
    // A member of another process leaves there, when its process applies the kick.
    if (this.#seam.publish({ kind: "kick", id: member.id }) === false) this.#log(say.notSent);
  }

  /**
   * The member called `name` (or any name with its key), default names
   * included, here or in another process sharing the room.
   */
  #find(name: string): Member | RemoteMember | undefined {
    const key = nameKey(name);
    const chosen = this.#byName.get(key) ?? this.#remoteByName.get(key);
    if (chosen !== undefined) return chosen;
    const id = /^user(\d+)$/i.exec(name)?.[1];
    const member = id === undefined
      ? undefined
      : this.#members.get(Number(id)) ?? this.#remote.get(Number(id));
    return member?.name === defaultName(member?.id ?? 0) ? member : undefined;
  }

  #rename(member: Member, typed: string): void {
    const tell = (line: string) => this.#tell(member.link, encodeLine(line));
    if (typed === "") return tell(say.nickUsage);
    const error = nameError(typed);
    if (error !== undefined) return tell(error);
    // The name one has already is answered, not announced.
    if (typed.normalize("NFC") === member.name) return tell(say.alreadyNamed(member.name));
    const claimed = this.#claim(member, typed);
    if (claimed instanceof Promise) return this.#awaitClaim(member, typed, claimed);
    this.#renamed(member, typed, claimed);
  }

  /** A claim for `typed` settled: the member is renamed (and the room told), or told it is taken. */
  #renamed(member: Member, typed: string, granted: boolean): void {
    const tell = (line: string) => this.#tell(member.link, encodeLine(line));
    if (!granted) return tell(say.nameTaken(typed));
    // Canonically equivalent spellings are one name: it is kept composed (UAX #15).
    const name = typed.normalize("NFC");
    const old = member.name;
    const oldKey = nameKey(old);
    if (oldKey !== nameKey(name)) {
      this.#byName.delete(oldKey);
      this.#seam.releaseName(oldKey, member.id);
    }
    member.name = name;
    this.#byName.set(nameKey(name), member);
    this.#log(`renamed ${member.link.address} id=${member.id} ${old} -> ${name}`);
    tell(say.renamed(old, name));
    this.#seam.publish({ kind: "rename", member: { id: member.id, name }, from: old });
  }

  /**
   * `/list`: a line per member in the spirit of Redis's CLIENT LIST, then
   * the count. Members see only those in the room; the console sees those
   * waiting for the password too, marked, and counted apart. In a room
   * shared through the seam, each line names the member's instance, and the
   * other processes' members follow this one's (without `idle=`, which only
   * their own process knows).
   */
  #list(output: (line: string) => void, console: boolean): void {
    const now = this.#clock();
    const instance = this.#seam.instance;
    let listed = 0;
    let waiting = 0;
    for (const member of this.#members.values()) {
      if (!member.admitted && !console) continue;
      const line = listLine({ ...member, address: member.link.address, instance }, now);
      if (member.admitted) listed++;
      else waiting++;
      output(member.admitted ? line : `${line} ${WAITING_MARK}`);
    }
    for (const remote of this.#remote.values()) {
      output(listLine(remote, now));
      listed++;
    }
    const count = say.count(listed, this.#noun);
    output(waiting === 0 ? count : `${count} (and ${waiting} ${WAITING_MARK})`);
  }
}
