/**
 * Who may join, by address: the `--allow` and `--deny` rules (addresses and
 * CIDR ranges, IPv4 and IPv6), the `--max-per-address` count, and the budget
 * of answers a UDP server may send to addresses it does not know.
 *
 * The rules follow ncat's (Ncat Users' Guide, "Access Control"): with any
 * `--allow`, only the addresses it lists may come in; `--deny` shuts out the
 * addresses it lists; an address both allow and deny list is denied. Both
 * servers check an address before it reaches the room, so a refused client
 * never counts against `--max-clients` and never sees a line of the room.
 *
 * Addresses are compared as numbers: 32 bits for IPv4, 128 for IPv6, with
 * the text read as RFC 4291 (section 2.2) and RFC 4632 (section 3.1) write
 * it. A peer seen as an IPv4-mapped IPv6 address (`::ffff:127.0.0.2`, what a
 * dual-stack socket reports for an IPv4 peer, RFC 4291 section 2.5.5.2) is
 * the IPv4 address it carries: IPv4 rules match it, and it counts with the
 * same address seen over IPv4.
 *
 * Why our own matcher: node:net's `BlockList` (built into Deno, nothing to
 * fetch) matches as well, and the tests check this one against it; but it
 * cannot say why a rule is bad in the one line a flag error needs (a prefix
 * past /32, bits set past the prefix, a zone), nor give the key that counts
 * `::ffff:127.0.0.2` and `127.0.0.2` as one address. Parsing is the work;
 * matching is a shift and a compare.
 *
 * @example
 * ```ts
 * import { AccessControl, parseAddressRange } from "./access.ts";
 * const access = new AccessControl({
 *   allow: [parseAddressRange("--allow", "127.0.0.0/8")],
 *   deny: [parseAddressRange("--deny", "127.0.0.3")],
 *   maxPerAddress: 2,
 * }, "client");
 * access.refusal("127.0.0.2"); // undefined: it may come in
 * access.refusal("::ffff:127.0.0.3"); // "ERR not allowed from 127.0.0.3"
 * ```
 * @module
 */
import { canonicalHost, parseInteger, UsageError } from "./cli.ts";
import { say } from "./protocol.ts";

/** An IP address as a number: 32 bits for version 4, 128 for version 6. */
export interface IpAddress {
  version: 4 | 6;
  value: bigint;
}

/** A CIDR range (RFC 4632): every address whose first `prefix` bits are those of `network`. */
export interface AddressRange extends IpAddress {
  /** 0-32 for IPv4, 0-128 for IPv6; the whole width for a single address. */
  prefix: number;
}

const WIDTH = { 4: 32, 6: 128 } as const;
// An IPv4 part: 0-255 in decimal, without leading zeros, which some readers
// (inet_aton, BSD ping) take for octal: "010" would be 8 to them, 10 to us.
const IPV4 =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
// ::ffff:0:0/96, the IPv4-mapped addresses (RFC 4291, section 2.5.5.2).
const MAPPED_PREFIX = 0xffffn << 32n;
const LOW_32_BITS = (1n << 32n) - 1n;

/** Reads dotted-decimal IPv4 (`192.0.2.1`), or `undefined`. */
function parseIpv4(text: string): bigint | undefined {
  const parts = IPV4.exec(text);
  if (parts === null) return undefined;
  return parts.slice(1).reduce((value, part) => (value << 8n) | BigInt(part), 0n);
}

/**
 * Reads IPv6 text as RFC 4291, section 2.2 writes it: eight groups of one to
 * four hex digits; `::` once at most, for one or more groups of zeros; the
 * last 32 bits in dotted decimal if wanted (`::ffff:192.0.2.1`). No zone.
 */
function parseIpv6(text: string): bigint | undefined {
  let tail = 0n;
  if (text.includes(".")) {
    // The dotted quad stands for the last two groups.
    const colon = text.lastIndexOf(":");
    const ipv4 = parseIpv4(text.slice(colon + 1));
    if (colon === -1 || ipv4 === undefined) return undefined;
    tail = ipv4;
    text = text.slice(0, colon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = halves.map((half) => (half === "" ? [] : half.split(":")));
  if (!groups.every((list) => list.every((group) => HEX_GROUP.test(group)))) return undefined;
  const count = groups[0].length + (groups[1]?.length ?? 0);
  // Without "::" all eight groups are there; with it, it stands for at least one.
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const zeros = new Array<string>(8 - count).fill("0");
  const all = [...groups[0], ...(halves.length === 2 ? zeros : []), ...(groups[1] ?? [])];
  return all.reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n) | tail;
}

/**
 * Reads an IP address, IPv4 or IPv6, strictly: no host names, no leading
 * zeros in IPv4, no zone. An IPv4-mapped IPv6 address is returned as the
 * IPv4 address it carries. `undefined` if `text` is not an address.
 *
 * @example
 * ```ts
 * import { parseIp } from "./access.ts";
 * parseIp("::ffff:127.0.0.2"); // { version: 4, value: 2130706434n }
 * parseIp("2001:db8::1"); // { version: 6, value: 0x20010db8000000000000000000000001n }
 * parseIp("01.2.3.4"); // undefined
 * ```
 */
export function parseIp(text: string): IpAddress | undefined {
  if (!text.includes(":")) {
    const value = parseIpv4(text);
    return value === undefined ? undefined : { version: 4, value };
  }
  const value = parseIpv6(text);
  if (value === undefined) return undefined;
  if (value >> 32n === MAPPED_PREFIX >> 32n) return { version: 4, value: value & LOW_32_BITS };
  return { version: 6, value };
}

/**
 * Reads a peer's address as Deno reports it (`remoteAddr.hostname`): an
 * address, maybe with a zone (`fe80::1%2`), which says which link the peer is
 * on, not who it is, and is dropped.
 */
export function peerIp(hostname: string): IpAddress | undefined {
  const zone = hostname.indexOf("%");
  return parseIp(zone === -1 ? hostname : hostname.slice(0, zone));
}

/**
 * Reads one address or CIDR range of `flag` (`--allow`, `--deny`): an
 * address is a range of one (`/32`, `/128`). An IPv6 range inside
 * `::ffff:0:0/96` is the IPv4 range it maps (`::ffff:10.0.0.0/104` is
 * `10.0.0.0/8`). Throws a {@linkcode UsageError} that quotes the value and
 * says what is wrong: not an address, a prefix out of range, or bits set past
 * the prefix (RFC 4632, section 3.1: the bits past it are zero), which is
 * most often a typo, so the range meant is suggested rather than guessed.
 *
 * @example
 * ```ts
 * import { parseAddressRange } from "./access.ts";
 * parseAddressRange("--allow", "2001:db8::/32"); // { version: 6, value: 0x20010db8n << 96n, prefix: 32 }
 * // parseAddressRange("--allow", "10.1.2.3/8") throws a UsageError:
 * // Cannot parse --allow "10.1.2.3/8": bits are set past the /8 prefix: did you mean 10.0.0.0/8?
 * ```
 */
export function parseAddressRange(flag: string, text: string): AddressRange {
  const fail = (why: string): never => {
    throw new UsageError(`Cannot parse ${flag} "${text}": ${why}`);
  };
  if (text === "") fail("give an IPv4 or IPv6 address or a CIDR range");
  if (text.includes("%")) fail("a zone (%...) names a link, not who may connect: leave it out");
  const slash = text.indexOf("/");
  const address = slash === -1 ? text : text.slice(0, slash);
  const written = address.includes(":") ? 6 : 4;
  const value = written === 6 ? parseIpv6(address) : parseIpv4(address);
  if (value === undefined) {
    return fail(
      `not an IPv${written} address (give an address or a CIDR range, as in 192.0.2.0/24 or ` +
        `2001:db8::/32; host names are not taken)`,
    );
  }
  let prefix: number = WIDTH[written];
  if (slash !== -1) {
    const digits = text.slice(slash + 1);
    prefix = /^(0|[1-9]\d{0,2})$/.test(digits) ? Number(digits) : NaN;
    if (!(prefix <= WIDTH[written])) {
      fail(`the prefix after / must be a whole number from 0 to ${WIDTH[written]}`);
    }
  }
  const hostBits = BigInt(WIDTH[written] - prefix);
  const network = (value >> hostBits) << hostBits;
  if (network !== value) {
    fail(
      `bits are set past the /${prefix} prefix: did you mean ` +
        `${formatIp({ version: written, value: network })}/${prefix}?`,
    );
  }
  // A range inside ::ffff:0:0/96 is the IPv4 range it maps; one that reaches
  // past that block (a prefix under 96) stays IPv6.
  if (written === 6 && prefix >= 96 && value >> 32n === MAPPED_PREFIX >> 32n) {
    return { version: 4, value: value & LOW_32_BITS, prefix: prefix - 96 };
  }
  return { version: written, value, prefix };
}

/**
 * Reads every value of a repeatable flag, each one a single range or, as
 * ncat takes them, several separated by commas (`127.0.0.1,::1`).
 */
export function parseAddressRanges(flag: string, values: readonly string[]): AddressRange[] {
  return values.flatMap((value) =>
    value.split(",").map((piece) => parseAddressRange(flag, piece.trim()))
  );
}

/** The flags both servers take for who may connect, as {@linkcode parseFlags} gives them. */
export interface AccessFlags {
  allow?: string[];
  deny?: string[];
  "max-per-address": string;
}

/**
 * Reads `--allow`, `--deny` (each repeatable) and `--max-per-address`
 * (a whole number, 0 for no limit); throws a {@linkcode UsageError} for a bad one.
 */
export function parseAccessFlags(flags: AccessFlags): AccessOptions {
  return {
    allow: parseAddressRanges("--allow", flags.allow ?? []),
    deny: parseAddressRanges("--deny", flags.deny ?? []),
    maxPerAddress: parseInteger("--max-per-address", flags["max-per-address"], 0, 1_000_000),
  };
}

/** Is `ip` inside `range`? An IPv4 address never is inside an IPv6 range, nor the reverse. */
export function inRange(ip: IpAddress, range: AddressRange): boolean {
  if (ip.version !== range.version) return false;
  const hostBits = BigInt(WIDTH[range.version] - range.prefix);
  return ip.value >> hostBits === range.value >> hostBits;
}

/**
 * Writes an address: IPv4 in dotted decimal, IPv6 as RFC 5952 (section 4)
 * recommends: lower case, no leading zeros, the longest run of two or more
 * zero groups (the first, if two are as long) as `::`, and an IPv4-mapped
 * address with its last 32 bits in dotted decimal.
 */
export function formatIp(ip: IpAddress): string {
  if (ip.version === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((ip.value >> shift) & 0xffn)).join(".");
  }
  // A mapped address keeps its IPv4 form (RFC 5952, section 5).
  if (ip.value >> 32n === MAPPED_PREFIX >> 32n) {
    return `::ffff:${formatIp({ version: 4, value: ip.value & LOW_32_BITS })}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => (ip.value >> BigInt(112 - 16 * i)) & 0xffffn);
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0n) length++;
    if (length > best.length) best = { start, length };
  }
  const hex = groups.map((group) => group.toString(16));
  if (best.start === -1) return hex.join(":");
  const head = hex.slice(0, best.start).join(":");
  const tail = hex.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
}

/** What {@linkcode AccessControl} enforces. */
export interface AccessOptions {
  /** If not empty, only addresses in one of these ranges may come in. */
  allow?: readonly AddressRange[];
  /** Addresses in these ranges may not come in, even when `allow` lists them. */
  deny?: readonly AddressRange[];
  /** Clients (TCP) or peers (UDP) from one address at once; 0 = no limit (default). */
  maxPerAddress?: number;
}

/**
 * The checks an address passes before it reaches the room, and the count of
 * members from each address. State lives here alone: the rules, and how many
 * from each address are in (by {@linkcode addressKey}, entries removed at 0,
 * so the map holds only addresses with someone in).
 *
 * A transport asks {@linkcode refusal} for a newcomer, calls
 * {@linkcode take} once it is in, and {@linkcode release} once it is gone.
 */
export class AccessControl {
  readonly #allow: readonly AddressRange[];
  readonly #deny: readonly AddressRange[];
  readonly #maxPerAddress: number;
  readonly #noun: "client" | "peer";
  readonly #counts = new Map<string, number>();

  constructor(options: AccessOptions, noun: "client" | "peer") {
    this.#allow = options.allow ?? [];
    this.#deny = options.deny ?? [];
    this.#maxPerAddress = options.maxPerAddress ?? 0;
    this.#noun = noun;
  }

  /**
   * Whether the rules let `hostname` in (as ncat: with any allow rule it must
   * match one; it must match no deny rule). An address that cannot be read
   * matches no rule.
   */
  permits(hostname: string): boolean {
    if (this.#allow.length === 0 && this.#deny.length === 0) return true;
    const ip = peerIp(hostname);
    if (this.#allow.length > 0 && !(ip && this.#allow.some((range) => inRange(ip, range)))) {
      return false;
    }
    return !(ip && this.#deny.some((range) => inRange(ip, range)));
  }

  /**
   * The `ERR` line that turns `hostname` away, or `undefined` if it may come
   * in now: not allowed by the rules, or as many from it as
   * `maxPerAddress` are in already. The line shows the address as
   * {@linkcode addressKey} writes it (`127.0.0.3` for `::ffff:127.0.0.3`).
   */
  refusal(hostname: string): string | undefined {
    if (!this.permits(hostname)) return say.notAllowed(addressKey(hostname));
    const max = this.#maxPerAddress;
    if (max > 0) {
      const key = addressKey(hostname);
      if ((this.#counts.get(key) ?? 0) >= max) return say.tooManyFromAddress(key, max, this.#noun);
    }
    return undefined;
  }

  /** One more member from `hostname` is in. */
  take(hostname: string): void {
    if (this.#maxPerAddress === 0) return;
    const key = addressKey(hostname);
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /** A member from `hostname` is gone (each {@linkcode take} is released once). */
  release(hostname: string): void {
    if (this.#maxPerAddress === 0) return;
    const key = addressKey(hostname);
    const count = (this.#counts.get(key) ?? 0) - 1;
    if (count > 0) this.#counts.set(key, count);
    else this.#counts.delete(key);
  }

  /** Members counted from `hostname` now (for tests and the console). */
  countFrom(hostname: string): number {
    return this.#counts.get(addressKey(hostname)) ?? 0;
  }
}

/**
 * The key that one address has however it is written: `127.0.0.2`,
 * `::ffff:127.0.0.2` and `::ffff:7f00:2` have one key; so do `2001:db8::1`
 * and `2001:0db8:0:0:0:0:0:1`. A zone is dropped. Text that is no address is
 * its own key.
 */
export function addressKey(hostname: string): string {
  // One spelling for every writing of an address is formatAddress's too (cli.ts).
  return canonicalHost(hostname).replace(/%.*$/, "");
}

/** Answers a UDP server may send each second to addresses not in the room (see {@linkcode AnswerBudget}). */
export const STRANGER_ANSWERS_PER_SECOND = 10;

/**
 * A bound on the answers sent to strangers: at most `perSecond` in each
 * second (a fixed window on the given clock, in milliseconds).
 *
 * Why: a UDP source address is whatever the sender writes, so a server that
 * answers each refused datagram can be made to send its answers to a victim,
 * more bytes than the attacker sent (an "amplifier"; US-CERT TA14-017A). With
 * this bound a server sends at most `perSecond` such answers in all, however
 * many datagrams arrive; the rest are logged, not answered.
 */
export class AnswerBudget {
  readonly #perSecond: number;
  readonly #clock: () => number;
  #windowStart = -Infinity;
  #used = 0;

  constructor(
    perSecond = STRANGER_ANSWERS_PER_SECOND,
    clock: () => number = () => performance.now(),
  ) {
    this.#perSecond = perSecond;
    this.#clock = clock;
  }

  /** Takes one answer from this second's budget; `false` when it is spent. */
  take(): boolean {
    const now = this.#clock();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= this.#perSecond) return false;
    this.#used++;
    return true;
  }
}
