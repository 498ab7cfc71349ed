/**
 * The chat protocol that the TCP and UDP servers share: what a client may be
 * named, how a command line is read, and the exact text of every notice and
 * error, so that both servers say the same things the same way.
 *
 * On the wire: `<name> text` is a relayed message, `* ...` a server notice,
 * `ERR ...` an error; lines from clients that start with `/` are commands.
 *
 * @module
 */
import { MAX_MESSAGE_BYTES, MAX_NAME_CHARS } from "./line_buffer.ts";

/** The name console lines are relayed under; no client may take it. */
export const SERVER_NAME = "server";

// Letters, digits, "_" and "-" only: no spaces, punctuation, marks, control or
// format characters (U+200B and friends are \p{Cf}), so a name cannot hide
// anything or pass for another one.
const NAME_PATTERN = /^[\p{L}\p{Nd}_-]+$/u;
// Some letters are invisible: the Hangul fillers (U+115F, U+1160, U+3164,
// U+FFA0) are \p{Lo} yet draw nothing, so "server" plus one would look like
// "server". Unicode marks every such character Default_Ignorable.
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
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

// Default names are user<id>; the pattern is kept for them, so a newcomer's
// default name can never have been taken by somebody's /nick.
const DEFAULT_NAME_PATTERN = /^user\d+$/;

/** The name a client has until it picks one. */
export function defaultName(id: number): string {
  return `user${id}`;
}

/** Why `name` cannot be a name, or `undefined` when it can. */
export function nameError(name: string): string | undefined {
  const chars = [...name].length;
  if (chars < 1 || chars > MAX_NAME_CHARS || !NAME_PATTERN.test(name) || INVISIBLE.test(name)) {
    return `ERR invalid name: use 1-${MAX_NAME_CHARS} letters, digits, _ or -`;
  }
  // Checked on the key as well: NFKC turns letters of no script (the
  // mathematical 𝗅, the full-width ｌ) into Latin ones.
  const key = nameKey(name);
  const scripts = (text: string) => LOOK_ALIKE_SCRIPTS.filter((script) => script.test(text));
  if (scripts(name).length > 1 || scripts(key).length > 1) {
    return "ERR invalid name: do not mix Latin, Greek, Cyrillic, Armenian or Cherokee letters";
  }
  if (key === nameKey(SERVER_NAME) || DEFAULT_NAME_PATTERN.test(key)) {
    return `ERR name reserved: ${name}`;
  }
  return undefined;
}

/**
 * The key names are compared by: compatibility-normalised and case-folded, so
 * "Alice", "ALICE" and the full-width "ａｌｉｃｅ" are all one name.
 */
export function nameKey(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}

/** A command line split into its command and the rest. */
export interface Command {
  name: string;
  argument: string;
}

/** Reads `/cmd argument` from a line, or returns `undefined` for a plain message. */
export function parseCommand(line: string): Command | undefined {
  if (!line.startsWith("/")) return undefined;
  const space = line.indexOf(" ");
  if (space === -1) return { name: line.toLowerCase(), argument: "" };
  return {
    name: line.slice(0, space).toLowerCase(),
    argument: line.slice(space + 1).trim(),
  };
}

/** What a client in the room is shown as in `/list`. */
export interface ListEntry {
  id: number;
  name: string;
  address: string;
  connectedAt: number;
  lastHeardAt: number;
}

/** One `/list` line, in the spirit of Redis's CLIENT LIST. */
export function listLine(entry: ListEntry, now: number): string {
  const age = Math.floor((now - entry.connectedAt) / 1000);
  const idle = Math.floor((now - entry.lastHeardAt) / 1000);
  return `* id=${entry.id} name=${entry.name} addr=${entry.address} age=${age} idle=${idle}`;
}

/** Every line the servers send, in one place. */
export const say = {
  relay: (name: string, text: string) => `<${name}> ${text}`,
  welcome: (name: string) => `* welcome, you are ${name} (type /help for commands)`,
  joined: (name: string) => `* ${name} joined`,
  left: (name: string, cause: string) => `* ${name} left (${cause})`,
  renamed: (from: string, to: string) => `* ${from} is now ${to}`,
  count: (n: number, noun: string) => `* ${n} ${noun}${n === 1 ? "" : "s"}`,
  help: [
    "* /nick NAME   take a name (1-32 letters, digits, _ or -)",
    "* /list        who is here: id, name, address, age and idle seconds",
    "* /quit        leave",
    "* /help        this help",
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
  serverFull: (max: number, noun: string) => `ERR server full (max ${max} ${noun}s)`,
};
