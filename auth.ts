/**
 * The room's password (`--password-file`): reading it, checking a guess in
 * constant time, and counting wrong tries where there is no connection to
 * close (UDP).
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
import { MAX_PASSWORD_TRIES, PASS_COMMAND } from "./protocol.ts";

/** The longest password, in UTF-8 bytes: `/pass PASSWORD` must fit in one 255-byte message. */
export const MAX_PASSWORD_BYTES = MAX_MESSAGE_BYTES - `${PASS_COMMAND} `.length;
/** UDP: how long an address that gave MAX_PASSWORD_TRIES wrong passwords is ignored, in ms. */
export const PASSWORD_LOCKOUT_MS = 60_000;
/** UDP: addresses whose wrong tries are remembered at once; past it the oldest is forgotten. */
export const MAX_ADDRESSES_WITH_TRIES = 4096;

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

/** What a UDP stranger's `/pass` comes to: in, wrong (the tries so far), or ignored. */
export type PasswordVerdict =
  | { kind: "right" }
  | { kind: "wrong"; tries: number }
  | { kind: "locked" };

/**
 * Wrong passwords by address, for a transport with no connection to close
 * (UDP). An address (its IP, any port) that gives {@linkcode MAX_PASSWORD_TRIES}
 * wrong passwords within {@linkcode PASSWORD_LOCKOUT_MS} of each other is
 * locked: its passwords are not even checked until that long after its last
 * wrong one. A right password forgets the address's tries.
 *
 * The table is bounded: at most {@linkcode MAX_ADDRESSES_WITH_TRIES}
 * addresses, the oldest forgotten first, so a flood of forged source
 * addresses costs a fixed amount of memory. A UDP source can be forged, so a
 * sender can lock out, for a while, an address it forges: the price of
 * limiting guesses where nothing proves who sent a datagram.
 */
export class PasswordTries {
  readonly #password: Password;
  readonly #clock: () => number;
  readonly #maxAddresses: number;
  /** Wrong tries by address key, oldest first (a Map keeps insertion order). */
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

  /** Checks `given` from the address with key `key` (see access.ts, `addressKey`). */
  check(key: string, given: string): PasswordVerdict {
    const now = this.#clock();
    let entry = this.#tries.get(key);
    if (entry !== undefined && now - entry.lastAt >= PASSWORD_LOCKOUT_MS) {
      this.#tries.delete(key); // its tries are old: a fresh start
      entry = undefined;
    }
    if (entry !== undefined && entry.count >= MAX_PASSWORD_TRIES) return { kind: "locked" };
    if (this.#password.matches(given)) {
      this.#tries.delete(key);
      return { kind: "right" };
    }
    if (entry === undefined) {
      if (this.#tries.size >= this.#maxAddresses) {
        this.#tries.delete(this.#tries.keys().next().value!);
      }
      entry = { count: 0, lastAt: now };
      this.#tries.set(key, entry);
    }
    entry.count++;
    entry.lastAt = now;
    return { kind: "wrong", tries: entry.count };
  }

  /** Addresses remembered now (at most the bound). */
  get size(): number {
    return this.#tries.size;
  }
}
