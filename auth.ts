/**
 * The room's password (`--password-file`): reading it, checking a guess in
 * constant time, and counting wrong tries by address, for both servers.
 *
 * The password is the first line of a file. A client gives it with
 * `/pass PASSWORD` (IRC's PASS, RFC 2812 section 3.1.1) before anything
 * else; until then it is not in the room (room.ts keeps it waiting). The
 * server keeps only the password's SHA-256 digest, compares digests with
 * `timingSafeEqual` so the time taken says nothing about how much of a guess
 * was right, and never writes a password or a guess to its log.
 *
 * @example
 * ```ts
 * import { Password } from "./auth.ts";
 * const password = new Password("correct horse");
 * password.matches("correct horse"); // true
 * password.matches("correct"); // false
 * ```
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { type Mode, readFlagFile, RuntimeError, UsageError } from "./cli.ts";
import { hasControlCharacters, MAX_MESSAGE_BYTES } from "./line_buffer.ts";
import { MAX_PASSWORD_TRIES, PASS_COMMAND, say } from "./protocol.ts";
import { addressKey, formatIp, peerIp } from "./access.ts";

/** The longest password, in UTF-8 bytes: `/pass PASSWORD` must fit in one 255-byte message. */
export const MAX_PASSWORD_BYTES = MAX_MESSAGE_BYTES - `${PASS_COMMAND} `.length;
/**
 * The window for wrong passwords, in ms: an address that gives
 * MAX_PASSWORD_TRIES wrong ones, each within this long of the one before, is
 * locked out until this long after its last.
 */
export const PASSWORD_LOCKOUT_MS = 60_000;
/** Addresses whose wrong tries are remembered at once (see {@linkcode PasswordTries}). */
export const MAX_ADDRESSES_WITH_TRIES = 4096;
/** IPv6 addresses count by their first 64 bits: one host is given a whole /64 (RFC 7421). */
export const IPV6_TRIES_PREFIX = 64;

const encoder = new TextEncoder();

/** SHA-256 of the NFC form of `text` (32 bytes). */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(encoder.encode(text.normalize("NFC"))).digest();
}

/**
 * A room password, kept as its SHA-256 digest only. Both sides are compared
 * in NFC, so "café" typed composed or decomposed is one password (as PRECIS's
 * OpaqueString profile does, RFC 8265 section 4.2).
 */
export class Password {
  readonly #digest: Uint8Array;

  constructor(secret: string) {
    this.#digest = digest(secret);
  }

  /**
   * Is `given` the password? Digests of equal length are compared with
   * `timingSafeEqual`, which looks at every byte whatever the first
   * difference, so the time taken leaks neither the password nor its length.
   */
  matches(given: string): boolean {
    return timingSafeEqual(digest(given), this.#digest);
  }
}

/**
 * Reads the password: the first line of `path` without its line end (`\n` or
 * `\r\n`). It must be UTF-8 text of 1 to {@linkcode MAX_PASSWORD_BYTES} bytes,
 * with no control character and no white space at either end (`/pass` could
 * not carry those). Every failure is a {@linkcode RuntimeError} of one line
 * naming `script`, the flag and the file: the file cannot be read (no
 * `--allow-read`, said with the grant that is needed: {@linkcode readFlagFile}),
 * or its first line is no password.
 */
export async function readPasswordFile(script: string, path: string): Promise<string> {
  const fail = (why: string): never => {
    throw new RuntimeError(`${script}: cannot use --password-file ${path}: ${why}`);
  };
  const text = await readFlagFile(script, "--password-file", path);
  const line = text.split("\n", 1)[0].replace(/\r$/, "");
  // readTextFile puts U+FFFD where the bytes are not UTF-8.
  if (line.includes("\uFFFD")) fail("its first line is not UTF-8 text");
  if (line === "") fail("its first line, the password, is empty");
  if (encoder.encode(line).length > MAX_PASSWORD_BYTES) {
    fail(`the password is over ${MAX_PASSWORD_BYTES} bytes (${PASS_COMMAND} PASSWORD is one line)`);
  }
  if (hasControlCharacters(line)) fail("the password holds a control character");
  if (line.trim() !== line) fail("the password begins or ends with white space");
  return line;
}

/**
 * `--password-file`: the room's password from the file, or `undefined`
 * without the flag. Chat mode only (a {@linkcode UsageError} otherwise),
 * checked before the file is read.
 */
export async function readPasswordFlag(
  script: string,
  path: string | undefined,
  mode: Mode,
): Promise<Password | undefined> {
  if (path === undefined) return undefined;
  if (mode !== "chat") {
    throw new UsageError(
      "--password-file needs --mode chat: an echo service has no room to guard",
    );
  }
  return new Password(await readPasswordFile(script, path));
}

/**
 * Whose wrong passwords count together: an IPv4 address (an IPv4-mapped IPv6
 * one is the IPv4 address it carries), or an IPv6 address's /64
 * (`2001:db8:1:2::/64`), since one host may hold every address of its /64
 * and take a new one for each guess. A zone is dropped; text that is no
 * address is its own key.
 *
 * @example
 * ```ts
 * import { passwordTriesKey } from "./auth.ts";
 * passwordTriesKey("::ffff:192.0.2.1"); // "192.0.2.1"
 * passwordTriesKey("2001:db8:1:2:aaaa::1"); // "2001:db8:1:2::/64"
 * ```
 */
export function passwordTriesKey(hostname: string): string {
  const ip = peerIp(hostname);
  if (ip === undefined) return addressKey(hostname);
  if (ip.version === 4) return formatIp(ip);
  const hostBits = BigInt(128 - IPV6_TRIES_PREFIX);
  return `${
    formatIp({ version: 6, value: (ip.value >> hostBits) << hostBits })
  }/${IPV6_TRIES_PREFIX}`;
}

/** Why a password was not even checked: who is locked out, and for how long still. */
export interface Lockout {
  /** The {@linkcode passwordTriesKey} locked out. */
  key: string;
  /** Milliseconds until a password from it is checked again. */
  retryMs: number;
  /** True when the table is full of addresses locked out or counting (see {@linkcode PasswordTries}). */
  full?: boolean;
}

/**
 * The line that tells a client its password was not checked:
 * `ERR too many wrong passwords from ADDRESS: try again in N s`.
 */
export function lockoutLine(lockout: Lockout): string {
  const from = lockout.full ? "lately (from too many addresses)" : `from ${lockout.key}`;
  return say.lockedOut(from, Math.max(1, Math.ceil(lockout.retryMs / 1000)));
}

/** What a `/pass` comes to: in, wrong (the address's tries so far), or not checked. */
export type PasswordVerdict =
  | { kind: "right" }
  | { kind: "wrong"; tries: number }
  | ({ kind: "locked" } & Lockout);

/**
 * Wrong passwords by address, one table for a server, whatever the transport:
 * over TCP they count across connections (closing one and connecting again
 * starts nothing afresh), over UDP across ports. Addresses are keyed by
 * {@linkcode passwordTriesKey} (IPv6 by its /64). An address that gives
 * {@linkcode MAX_PASSWORD_TRIES} wrong passwords, each within
 * {@linkcode PASSWORD_LOCKOUT_MS} of the one before, is locked out: its
 * passwords are not even checked (so not even the right one gets in) until
 * that long after its last wrong one. A right password forgets the address's
 * tries. The password and the guesses are never kept or logged here.
 *
 * The table is bounded: at most `maxAddresses` entries
 * ({@linkcode MAX_ADDRESSES_WITH_TRIES}), kept in order of their last wrong
 * try, so those older than the window (forgotten anyway) are dropped from the
 * front first. What it must never do, when full, is forget an entry still in
 * its window: whichever entry it picked, least recently active or not, an
 * attacker who controls a few more keys (forged UDP sources, a second /64)
 * could arrange for it to be its own, locked one, and each forgetting would
 * give that address its tries again: with the table full of locked entries,
 * two addresses taking turns would evict each other for ever. So when every
 * entry is in its window, a password from a key the table does not hold is
 * not checked: it is answered as locked out ({@linkcode Lockout}'s `full`)
 * until the oldest entry's window ends. Nobody gets more than
 * MAX_PASSWORD_TRIES guesses per key per window; the price is that a flood of
 * wrong passwords from more than `maxAddresses` keys within a minute shuts out
 * newcomers who have no entry (members already in are not touched, and
 * addresses with tries left keep them). Over UDP that flood may come from
 * forged sources, which can also lock out an address they forge: the price
 * of limiting guesses where nothing proves who sent a datagram.
 */
export class PasswordTries {
  readonly #password: Password;
  readonly #clock: () => number;
  readonly #maxAddresses: number;
  /** Wrong tries by key, least recently wrong first: a wrong try moves its key to the end. */
  readonly #tries = new Map<string, { count: number; lastAt: number }>();

  constructor(
    password: Password,
    clock: () => number = () => performance.now(),
    maxAddresses = MAX_ADDRESSES_WITH_TRIES,
  ) {
    this.#password = password;
    this.#clock = clock;
    this.#maxAddresses = maxAddresses;
  }

  /**
   * Is `hostname` locked out now? Its {@linkcode Lockout}, or `undefined`.
   * For a transport to refuse a newcomer before it can send a password (a
   * new TCP connection); asking changes nothing.
   */
  lockout(hostname: string): Lockout | undefined {
    const now = this.#clock();
    this.#forgetOld(now);
    const key = passwordTriesKey(hostname);
    const entry = this.#tries.get(key);
    if (entry === undefined || entry.count < MAX_PASSWORD_TRIES) return undefined;
    return { key, retryMs: entry.lastAt + PASSWORD_LOCKOUT_MS - now };
  }

  /** Checks `given` from `hostname` (a peer's address as Deno reports it). */
  check(hostname: string, given: string): PasswordVerdict {
    const now = this.#clock();
    this.#forgetOld(now);
    const key = passwordTriesKey(hostname);
    const entry = this.#tries.get(key);
    if (entry !== undefined && entry.count >= MAX_PASSWORD_TRIES) {
      return { kind: "locked", key, retryMs: entry.lastAt + PASSWORD_LOCKOUT_MS - now };
    }
    if (entry === undefined && this.#tries.size >= this.#maxAddresses) {
      // Full, every entry in its window: a wrong try could not be counted, so none is checked.
      const oldest = this.#tries.values().next().value!;
      return {
        kind: "locked",
        key,
        retryMs: oldest.lastAt + PASSWORD_LOCKOUT_MS - now,
        full: true,
      };
    }
    if (this.#password.matches(given)) {
      this.#tries.delete(key);
      return { kind: "right" };
    }
    const count = (entry?.count ?? 0) + 1;
    this.#tries.delete(key); // to the end: the order is that of the last wrong try
    this.#tries.set(key, { count, lastAt: now });
    return { kind: "wrong", tries: count };
  }

  /** Keys remembered now (at most the bound). */
  get size(): number {
    return this.#tries.size;
  }

  /** Drops the entries whose window has passed: the oldest come first. */
  #forgetOld(now: number): void {
    for (const [key, entry] of this.#tries) {
      if (now - entry.lastAt < PASSWORD_LOCKOUT_MS) return;
      this.#tries.delete(key);
    }
  }
}
