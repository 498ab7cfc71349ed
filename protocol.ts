/**
 * The chat protocol that the TCP and UDP servers share: what a client may be
 * named, how a command line is read, and the exact text of every notice and
 * error, so that both servers say the same things the same way.
 *
 * On the wire: `<name> text` is a relayed message, `* ...` a server notice,
 * `ERR ...` an error; lines from clients that start with `/` are commands,
 * except those that start with `//`: text, with the first `/` dropped.
 *
 * @module
 */
import { MAX_MESSAGE_BYTES, MAX_NAME_CHARS, sanitize } from "./line_buffer.ts";
import { ALLOWED_RANGES, KEY_MAP } from "./names_data.ts";

/** The name console lines are relayed under; no client may take it. */
export const SERVER_NAME = "server";

// Letters with their combining marks, digits, "_" and "-" only: no spaces,
// punctuation, control or format characters (U+200B and friends are \p{Cf}),
// so a name cannot hide anything or pass for another one. Checked after NFC.
const NAME_PATTERN = /^[\p{L}\p{M}\p{Nd}_-]+$/u;
// Some letters are invisible: the Hangul fillers (U+115F, U+1160, U+3164,
// U+FFA0) are \p{Lo} yet draw nothing, so "server" plus one would look like
// "server". Unicode marks every such character Default_Ignorable.
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
const MARK = /\p{M}/u;
const NONSPACING_MARK = /[\p{Mn}\p{Me}]/u;
const LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;
// At most this many nonspacing marks on one letter or digit, counted in NFD
// so that a precomposed letter counts the accents it draws and a name typed
// composed or decomposed counts the same. That is enough for the orthographies
// that stack the most: Vietnamese (ễ in Nguyễn is e, U+0302 and U+0303),
// polytonic Greek (ᾧ: ω and three), a Tibetan stack (སྒྲི: ས and three),
// Burmese medial and vowels (လှိုင်: လ and three, then င and one), Devanagari
// nukta and anusvara (ज़ीं: two, ी being a spacing mark). Spacing marks take
// room of their own and are not counted (Burmese ကျော် has three). UTS #39
// section 5.4 suggests refusing more than four nonspacing marks in a row; a
// name is short, and four accents on one letter are a stack.
const MAX_MARKS_PER_BASE = 3;
// Letters of these scripts look alike ("a" and the Cyrillic "а", "o" and the
// Greek "ο"), so "аlice" with one Cyrillic letter would pass for "alice". A
// name may use letters of one of them only; other scripts mix freely.
const LOOK_ALIKE_SCRIPTS = [
  /\p{Script=Latin}/u,
  /\p{Script=Greek}/u,
  /\p{Script=Cyrillic}/u,
  /\p{Script=Armenian}/u,
  /\p{Script=Cherokee}/u,
];
// UTS #39's identifier profile (section 3.1) as names_data.ts derives it: the
// code points a name may hold after NFKC. "30-39 5f" becomes [\u{30}-\u{39}\u{5f}].
const ALLOWED = new RegExp(
  `^[${ALLOWED_RANGES.replace(/[0-9a-f]+/g, "\\u{$&}").replaceAll(" ", "")}]+$`,
  "u",
);
// Each character's key where it is not the character itself (names_data.ts).
const KEYS = new Map(
  KEY_MAP.split(" ").map((entry) => entry.split(":").map(fromHex) as [string, string]),
);

/** "6c.69" is "li". */
function fromHex(codePoints: string): string {
  return String.fromCodePoint(...codePoints.split(".").map((hex) => parseInt(hex, 16)));
}

/** The name a client has until it picks one. */
export function defaultName(id: number): string {
  return `user${id}`;
}

/**
 * Why `name` cannot be a name, or `undefined` when it can. A name is:
 *
 * - 1-32 letters (each with its combining marks), digits, `_` or `-`, counted
 *   in code points after NFC (UAX #15, Unicode Normalization Forms), so that
 *   `José` typed as `Jose` and U+0301 is `José` and a name is at most 4 bytes
 *   a character; no invisible (Default_Ignorable) character;
 * - at most three nonspacing marks on a letter or digit, counted in NFD, none
 *   twice in a row (UTS #39, Unicode Security Mechanisms, section 5.4), none
 *   on nothing, `_` or `-`;
 * - made only of characters UTS #39's General Security Profile allows
 *   (section 3.1, as names_data.ts derives it from the Unicode Character
 *   Database), which leaves out what NFKC would change (full-width `ａ`,
 *   mathematical `𝗮`, `ſ`, the ligature `ﬁ`): no small capitals (`ᴀʟɪᴄᴇ`),
 *   no Runic or Cherokee;
 * - not a mix of Latin, Greek, Cyrillic, Armenian or Cherokee letters;
 * - not reserved: its key ({@linkcode nameKey}) is not that of `server` nor of
 *   a default name `user<N>`, so `ѕегѵег` (all Cyrillic) and `user١` (with an
 *   Arabic-Indic one) are reserved too.
 *
 * @example
 * ```ts
 * import { nameError } from "./protocol.ts";
 * nameError("Nguye\u0302\u0303n"); // undefined: Nguyễn
 * nameError("ᴀʟɪᴄᴇ"); // "ERR invalid name: use 1-32 letters, digits, _ or -"
 * nameError("user١"); // "ERR name reserved: user١"
 * ```
 */
export function nameError(name: string): string | undefined {
  const composed = name.normalize("NFC");
  const folded = name.normalize("NFKC");
  const chars = [...composed].length;
  if (
    chars < 1 || chars > MAX_NAME_CHARS || !NAME_PATTERN.test(composed) ||
    INVISIBLE.test(composed) || !marksAreWellPlaced(name.normalize("NFD")) ||
    !ALLOWED.test(composed)
  ) {
    return `ERR invalid name: use 1-${MAX_NAME_CHARS} letters, digits, _ or -`;
  }
  // Checked after NFKC as well: it turns letters of no script (the
  // mathematical 𝗅, the full-width ｌ) into Latin ones.
  const scripts = (text: string) => LOOK_ALIKE_SCRIPTS.filter((script) => script.test(text));
  if (scripts(composed).length > 1 || scripts(folded).length > 1) {
    return "ERR invalid name: do not mix Latin, Greek, Cyrillic, Armenian or Cherokee letters";
  }
  const key = nameKey(name);
  if (key === SERVER_KEY || DEFAULT_KEY_PATTERN.test(key) || noticeKeys().has(key)) {
    return `ERR name reserved: ${name}`;
  }
  return undefined;
}

let noticeKeysMade: Set<string> | undefined;
/**
 * The keys of the first words of the server's own notices that do not begin
 * with a name (`* kicked by server`, `* idle timeout, bye`, `* you are
 * already ...`): a member named `kicked` could otherwise forge one with
 * `/me by server`, and clients act on some of them (udp_client.ts stops when
 * kicked). Made from {@linkcode say} on first use, so a new notice is
 * covered when it is written.
 */
function noticeKeys(): Set<string> {
  if (noticeKeysMade !== undefined) return noticeKeysMade;
  noticeKeysMade = new Set();
  for (const value of Object.values(say)) {
    if (typeof value !== "string" && typeof value !== "function") continue;
    const word = /^\* (\S+)/.exec(withHoles(value))?.[1];
    if (word !== undefined && !word.includes(HOLE)) noticeKeysMade.add(nameKey(word));
  }
  return noticeKeysMade;
}

/** What {@linkcode withHoles} puts where a line's arguments go: in no line the servers send. */
export const HOLE = "\u0001";

/**
 * A line of {@linkcode say} with {@linkcode HOLE} in place of each of its
 * arguments (a fixed line as it is): the fixed text around them is how a
 * client recognises the line, and it can never drift from what the server
 * sends.
 *
 * @example
 * ```ts
 * import { HOLE, say, withHoles } from "./protocol.ts";
 * withHoles(say.notAllowed).split(HOLE)[0]; // "ERR not allowed from "
 * ```
 */
export function withHoles(line: string | ((...args: never[]) => string)): string {
  return typeof line === "string"
    ? line
    : (line as (...args: string[]) => string)(HOLE, HOLE, HOLE);
}

/**
 * The fixed text a line of {@linkcode say} begins with, before its first
 * argument: of the line with holes, or of one already filled in part
 * (`say.tooManyFromAddress(HOLE, 0, "client")`).
 */
export function linePrefix(line: string | ((...args: never[]) => string)): string {
  return withHoles(line).split(HOLE)[0];
}

/**
 * Whether each combining mark of `name` (NFD) follows a letter or digit, at
 * most {@linkcode MAX_MARKS_PER_BASE} nonspacing ones each, none repeated.
 */
function marksAreWellPlaced(name: string): boolean {
  let onLetterOrDigit = false;
  let nonspacing = 0;
  let previous = "";
  for (const char of name) {
    if (!MARK.test(char)) {
      onLetterOrDigit = LETTER_OR_DIGIT.test(char);
      nonspacing = 0;
    } else if (!onLetterOrDigit) {
      return false; // first in the name, or on "_" or "-"
    } else if (NONSPACING_MARK.test(char)) {
      if (++nonspacing > MAX_MARKS_PER_BASE || char === previous) return false;
    }
    previous = char;
  }
  return true;
}

/**
 * The key names are compared by: two names with one key are one name, taken
 * or reserved alike. It is the name after NFKC (UAX #15) and in lower case, so
 * `Alice`, `ALICE` and the full-width `ａｌｉｃｅ` are one name, then in NFD
 * with each character replaced by its key from names_data.ts: the confusable
 * skeleton of UTS #39 (section 4, Confusable Detection, with the prototypes
 * of confusables.txt) made case-insensitive. So `a1ice`, `AIice` and `alice`
 * are one name (I, l and 1 look alike; so do i and l once capitals count),
 * as are `rnary` and `mary`, `b0b` and `bob`, `user١` and `user1`, and the
 * Cyrillic `сор` and `cop`. A key is for comparing, never for showing.
 *
 * @example
 * ```ts
 * import { nameKey } from "./protocol.ts";
 * nameKey("a1ice") === nameKey("ALICE"); // true
 * nameKey("Jose\u0301") === nameKey("José"); // true
 * ```
 */
export function nameKey(name: string): string {
  let key = "";
  for (const char of name.normalize("NFKC").toLowerCase().normalize("NFD")) {
    key += KEYS.get(char) ?? char;
  }
  return key.normalize("NFD");
}

// Reserved keys: the server's name and default names, user and decimal digits
// (their keys: 0 and o are one, so are 1 and l), so a newcomer's default name
// can never have been taken, nor one that looks like it, by somebody's /nick.
const SERVER_KEY = nameKey(SERVER_NAME);
const DIGIT_KEYS = [..."0123456789"].map((digit) => RegExp.escape(nameKey(digit)));
const DEFAULT_KEY_PATTERN = new RegExp(
  `^${RegExp.escape(nameKey("user"))}(?:${DIGIT_KEYS.join("|")})+$`,
  "u",
);

/** A command line split into its command and the rest. */
export interface Command {
  name: string;
  argument: string;
}

// A line beginning with this is text, not a command (IRC clients use the same
// convention).
const TEXT_PREFIX = "//";

/**
 * Reads `/cmd argument` from a line, or returns `undefined` for a plain
 * message: a line that does not begin with "/", or one that begins with "//"
 * (text beginning with "/": see {@linkcode messageText}).
 */
export function parseCommand(line: string): Command | undefined {
  if (!line.startsWith("/") || line.startsWith(TEXT_PREFIX)) return undefined;
  const space = line.indexOf(" ");
  if (space === -1) return { name: line.toLowerCase(), argument: "" };
  return {
    name: line.slice(0, space).toLowerCase(),
    argument: line.slice(space + 1).trim(),
  };
}

/**
 * Reads a command from a line a member sent, not yet sanitised. Whether it is
 * one is decided on the line as sent, so a control character, an escape
 * sequence or a byte-order mark before its "/" makes it text rather than a
 * command once stripped; the command's name and argument are read from the
 * sanitised line. `undefined` for a message.
 */
export function readCommand(line: string): Command | undefined {
  return parseCommand(line) && parseCommand(sanitize(line));
}

/**
 * The text of a line that is not a command ({@linkcode parseCommand} gave
 * `undefined`): a line beginning with "//" loses its first "/", so `//quit`
 * is the text "/quit". That is how a user sends text beginning with "/", and
 * how netchat's clients send each piece of a line too long for one message
 * (`piecesAsText` in line_buffer.ts), so that no piece runs as a command.
 *
 * @example
 * ```ts
 * import { messageText } from "./protocol.ts";
 * messageText("//quit"); // "/quit"
 * messageText("hello"); // "hello"
 * ```
 */
export function messageText(line: string): string {
  return line.startsWith(TEXT_PREFIX) ? line.slice(1) : line;
}

/**
 * Reads the argument of `/msg NAME text` (already sanitised): the name is up to
 * the first white space, the text is the rest, trimmed. `undefined` when
 * either is missing (the room answers {@linkcode say}.msgUsage).
 */
export function parsePrivate(argument: string): { to: string; text: string } | undefined {
  const space = argument.search(/\s/);
  if (space === -1) return undefined;
  const to = argument.slice(0, space);
  const text = argument.slice(space + 1).trim();
  return to === "" || text === "" ? undefined : { to, text };
}

/**
 * The command that gives the room's password, named after IRC's `PASS`
 * (RFC 2812, section 3.1.1), which a client also sends before anything else.
 */
export const PASS_COMMAND = "/pass";

/**
 * Wrong passwords a client may give: the last one closes its connection
 * (TCP) or has its address ignored for a while (UDP).
 */
export const MAX_PASSWORD_TRIES = 3;

/**
 * The password in a `/pass PASSWORD` line, exactly as sent but for the
 * white space around it (it is compared, never shown, so it is not
 * sanitised), or `undefined` if the line is not that command. `""` for a
 * `/pass` with nothing after it.
 *
 * @example
 * ```ts
 * import { passwordIn } from "./protocol.ts";
 * passwordIn("/pass correct horse"); // "correct horse"
 * passwordIn("//pass text"); // undefined: text
 * ```
 */
export function passwordIn(line: string): string | undefined {
  return readCommand(line)?.name === PASS_COMMAND ? parseCommand(line)!.argument : undefined;
}

/** What a client in the room is shown as in `/list`. */
export interface ListEntry {
  id: number;
  name: string;
  address: string;
  connectedAt: number;
  /** Unknown for a member of another server instance: its `idle=` is left out. */
  lastHeardAt?: number;
  /** The server instance the member is on, in a room shared over Redis (redis_seam.ts). */
  instance?: number;
}

/**
 * One `/list` line, in the spirit of Redis's CLIENT LIST: `idle=` only when
 * the member's last line is known here, `instance=` only in a shared room.
 */
export function listLine(entry: ListEntry, now: number): string {
  const age = Math.floor((now - entry.connectedAt) / 1000);
  const idle = entry.lastHeardAt === undefined
    ? ""
    : ` idle=${Math.floor((now - entry.lastHeardAt) / 1000)}`;
  const instance = entry.instance === undefined ? "" : ` instance=${entry.instance}`;
  return `* id=${entry.id} name=${entry.name} addr=${entry.address} age=${age}${idle}${instance}`;
}

/** Every line the servers send, in one place. */
export const say = {
  relay: (name: string, text: string) => `<${name}> ${text}`,
  welcome: (name: string) => `* welcome, you are ${name} (type /help for commands)`,
  joined: (name: string) => `* ${name} joined`,
  left: (name: string, cause: string) => `* ${name} left (${cause})`,
  renamed: (from: string, to: string) => `* ${from} is now ${to}`,
  alreadyNamed: (name: string) => `* you are already ${name}`,
  action: (name: string, text: string) => `* ${name} ${text}`,
  private: (name: string, text: string) => `<${name}> (private) ${text}`,
  /** How the sender's own client shows a private line it sent (the room never sends this). */
  privateTo: (name: string, to: string, text: string) => `<${name}> (private to ${to}) ${text}`,
  msgUsage: "ERR usage: /msg NAME text",
  meUsage: "ERR usage: /me text",
  noSuchName: (name: string) => `ERR no such name: ${name}`,
  count: (n: number, noun: string) => `* ${n} ${noun}${n === 1 ? "" : "s"}`,
  help: [
    "* /nick NAME   take a name (1-32 letters, digits, _ or -)",
    "* /list        who is here: id, name, address, age and idle seconds",
    "* /msg NAME text  a line only NAME sees, marked (private)",
    "* /me text     an action: the room sees * yourname text",
    "* /quit        leave",
    "* /help        this help",
    "* //text       send a line that begins with / (the first / is dropped)",
  ],
  bye: "* bye",
  idle: "* idle timeout, bye",
  kicked: "* kicked by server",
  shuttingDown: "* server shutting down",
  nickUsage: "ERR usage: /nick NAME",
  nameTaken: (name: string) => `ERR name taken: ${name}`,
  unknownCommand: (command: string) => `ERR unknown command ${command} (try /help)`,
  tooLong: `ERR line too long (max ${MAX_MESSAGE_BYTES} bytes)`,
  invalidUtf8: "ERR invalid UTF-8",
  notTls: "ERR this port speaks plain text, not TLS: connect without TLS, or to the TLS port",
  serverFull: (max: number, noun: string) =>
    `ERR server full (max ${max} ${noun}${max === 1 ? "" : "s"})`,
  // Who may join (access.ts, auth.ts). An address is shown as the server saw
  // it; a password never is.
  notAllowed: (host: string) => `ERR not allowed from ${host}`,
  tooManyFromAddress: (host: string, max: number, noun: string) =>
    `ERR too many ${noun}s from ${host} (max ${max} per address)`,
  /** The one line a client of a room with a password sees before it gives the password. */
  passwordNeeded: `* password needed: send ${PASS_COMMAND} PASSWORD`,
  /** The answer to anything else it sends meanwhile. */
  passwordFirst: `ERR password needed: send ${PASS_COMMAND} PASSWORD first`,
  passUsage: `ERR usage: ${PASS_COMMAND} PASSWORD`,
  wrongPassword: (tries: number, max: number) => `ERR wrong password (${tries} of ${max} tries)`,
  /** The last wrong try: `then` says what follows (the connection closes, the address is ignored). */
  lastWrongPassword: (max: number, then: string) =>
    `ERR wrong password (${max} of ${max} tries): ${then}`,
  alreadyIn: "* no password needed: you are in",
  /** A password not checked: `from` is `from ADDRESS`, or why not from one (auth.ts). */
  lockedOut: (from: string, seconds: number) =>
    `ERR too many wrong passwords ${from}: try again in ${seconds} s`,
  // A room shared over Redis (redis_seam.ts): to this process's members when
  // its link to Redis goes and comes back, and when it fell behind the stream.
  roomDown: "* room unavailable: reconnecting to Redis (lines wait, up to a bound)",
  roomBack: "* room available again",
  missedEvents: (missed: number, instance: number) =>
    `* ${missed} room events of instance ${instance} were missed here (this instance fell behind)`,
  // A room shared over Redis (redis_seam.ts) while Redis cannot be reached.
  notSent: "ERR room unavailable: line not sent",
  nameNotChanged: "ERR room unavailable: name not changed",
  roomUnavailable: "ERR room unavailable: try again later",
  /** Lines sent while the member's /nick waits for the room-wide name claim, past the bound. */
  tooManyWaiting: (max: number) =>
    `ERR too many lines while a /nick is pending (max ${max}): line not sent`,
};

/**
 * The longest line, in bytes with its "\n", that the servers ever send: a
 * relayed message of 255 bytes under the longest name, a `/list` line with the
 * longest address. Small enough for one datagram on any path, and far inside
 * `client.ts`'s incoming bound.
 */
export const MAX_SERVER_LINE_BYTES = 512;

/**
 * How the room shows a line a member sent, so that a client can show its own
 * messages as the others see them: `<alice> text`, `* alice waves` for
 * `/me waves`, `<alice> (private to bob) hi` for `/msg bob hi` (the form bob
 * sees is `<alice> (private) hi`). `undefined` for any other command and for
 * a line the room relays to nobody (empty once sanitised, a `/me` or `/msg`
 * without its text): the client leaves those as typed.
 *
 * @example
 * ```ts
 * import { ownLine } from "./protocol.ts";
 * ownLine("alice", "/me waves"); // "* alice waves"
 * ownLine("alice", "/list"); // undefined
 * ```
 */
export function ownLine(name: string, line: string): string | undefined {
  const command = readCommand(line);
  if (command === undefined) {
    const text = sanitize(messageText(line));
    return text === "" ? undefined : say.relay(name, text);
  }
  if (command.name === "/me" && command.argument !== "") return say.action(name, command.argument);
  const message = command.name === "/msg" ? parsePrivate(command.argument) : undefined;
  return message && say.privateTo(name, message.to, message.text);
}

// The welcome line around the name it gives: "* welcome, you are " and " (type ...)".
const [WELCOME_BEFORE, WELCOME_AFTER] = withHoles(say.welcome).split(HOLE);

/**
 * The client's own name as a netchat server tells it: the name in the
 * welcome line, or the new name in `* OLD is now NEW` when OLD is `current`
 * (only the renamed member and the room see that line, and no member can
 * forge it: relayed lines begin with `<`). Otherwise `current`.
 */
export function ownNameFrom(line: string, current: string | undefined): string | undefined {
  if (line.startsWith(WELCOME_BEFORE) && line.endsWith(WELCOME_AFTER)) {
    return line.slice(WELCOME_BEFORE.length, line.length - WELCOME_AFTER.length);
  }
  const renamed = current === undefined ? undefined : say.renamed(current, "");
  if (renamed !== undefined && line.startsWith(renamed) && line.length > renamed.length) {
    return line.slice(renamed.length);
  }
  return current;
}

/**
 * Whether `bytes`, the first a client sent, begin a TLS ClientHello: a
 * handshake record (type 22) of TLS 1.0-1.3 (version 3.1-3.4, RFC 8446
 * section 5.1; SSL 3.0 is 3.0) whose first message is a ClientHello (type 1,
 * section 4). Such bytes on a plain port are a TLS client, not chat text.
 */
export function isTlsClientHello(bytes: Uint8Array): boolean {
  return bytes.length >= 6 && bytes[0] === 0x16 && bytes[1] === 0x03 && bytes[2] <= 0x04 &&
    bytes[5] === 0x01;
}
