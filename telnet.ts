/**
 * Telnet's in-band commands, taken out of a TCP byte stream so that
 * `telnet HOST PORT` works as a chat client.
 *
 * Telnet (RFC 854) sends its commands inside the data, each starting with
 * IAC (byte 255). That byte never occurs in UTF-8, so a command is recognised
 * without guessing, and a client that is not telnet is never affected. What
 * the server does with them:
 * - option requests are refused (RFC 855's rule for a party that supports
 *   no options: DO is answered WONT, WILL is answered DONT; DONT and WONT need
 *   no answer), so telnet stops waiting for one. Ctrl-C in telnet sends
 *   `IAC IP IAC DO TIMING-MARK` (RFC 860) and waits for the answer: WONT.
 * - subnegotiations (`IAC SB ... IAC SE`) and the one-byte commands (IP, AO,
 *   AYT, EC, EL, BRK, DM, NOP, GA) are removed;
 * - `IAC IAC` is a data byte 255, kept (a line holding it is not UTF-8), and
 *   so is an IAC before a verb and a line end (no telnet asks about a line
 *   end); an IAC before a byte that is no command is what a Synch leaves
 *   (its DM goes as urgent data) and is removed; a subnegotiation longer than
 *   {@linkcode MAX_SUBNEGOTIATION_BYTES} ends there;
 * - `CR NUL`, the Telnet NVT's bare carriage return that telnet may send for
 *   Enter, ends a line: the NUL becomes a `\n`, so the line ends in `\r\n`.
 *
 * @module
 */

const IAC = 255;
const DONT = 254;
const DO = 253;
const WONT = 252;
const WILL = 251;
const SB = 250;
const SE = 240;
/** The longest subnegotiation taken as one, in bytes. */
export const MAX_SUBNEGOTIATION_BYTES = 512;
const CR = 0x0d;
const NUL = 0x00;
const LF = 0x0a;

/** Where the filter is in the command syntax of RFC 854, between chunks too. */
const State = {
  Data: 0,
  /** After IAC. */
  Command: 1,
  /** After IAC DO/DONT/WILL/WONT: the option byte comes next. */
  Option: 2,
  /** Inside IAC SB ... */
  Subnegotiation: 3,
  /** After an IAC inside a subnegotiation. */
  SubnegotiationCommand: 4,
} as const;

/** Does `chunk` need a {@linkcode TelnetFilter}: does it hold an IAC or a NUL? */
export function hasTelnetBytes(chunk: Uint8Array): boolean {
  // An empty chunk (all of a read taken by echo's fast path) costs no scan.
  return chunk.length > 0 && (chunk.indexOf(IAC) !== -1 || chunk.indexOf(NUL) !== -1);
}

/**
 * Takes telnet commands out of one connection's stream, chunk by chunk (a
 * command may be split between chunks). Made for a connection once it has
 * sent a byte that {@linkcode hasTelnetBytes} finds.
 */
export class TelnetFilter {
  #state: number = State.Data;
  /** The option command waiting for its option byte (DO, DONT, WILL or WONT). */
  #verb = 0;
  /** Bytes of the subnegotiation in progress. */
  #subnegotiationBytes = 0;
  /** The last data byte so far was a CR. */
  #afterCr: boolean;

  /** `afterCr`: the last byte before the first chunk was a CR (still held by the line framer). */
  constructor(afterCr = false) {
    this.#afterCr = afterCr;
  }

  /**
   * Filters `chunk` and returns the data that is left and the answers to
   * send back (`undefined` if none). `chunk` is not changed.
   */
  filter(chunk: Uint8Array): { data: Uint8Array; reply?: Uint8Array } {
    const replies: number[] = [];
    // At most two bytes held from the previous chunk (IAC and a verb) come back as data.
    const data = new Uint8Array(chunk.length + 2);
    let out = 0;
    const keep = (byte: number) => {
      data[out++] = byte === NUL && this.#afterCr ? LF : byte;
      this.#afterCr = byte === CR;
    };
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      switch (this.#state) {
        case State.Data:
          if (byte === IAC) this.#state = State.Command;
          else keep(byte);
          continue;
        case State.Command:
          this.#state = State.Data;
          if (byte === IAC) { // IAC IAC: the data byte 255
            keep(IAC);
          } else if (byte === DO || byte === DONT || byte === WILL || byte === WONT) {
            this.#verb = byte;
            this.#state = State.Option;
          } else if (byte === SB) {
            this.#state = State.Subnegotiation;
            this.#subnegotiationBytes = 0;
          } else if (byte < SE) {
            // No command (they are 240-255): what is left of a Synch, whose DM
            // byte went as TCP urgent data, which a socket read never returns
            // (RFC 854, "The Synch Signal"). The IAC goes, the byte is data.
            keep(byte);
          } // else IP, AO, AYT, EC, EL, BRK, DM, NOP, GA, SE: removed
          continue;
        case State.Option:
          this.#state = State.Data;
          if (byte === CR || byte === LF) {
            // No telnet asks about a line end; these are stray bytes before one.
            keep(IAC);
            keep(this.#verb);
            keep(byte);
          } else if (this.#verb === DO) {
            replies.push(IAC, WONT, byte); // we enable no option (RFC 855)
          } else if (this.#verb === WILL) {
            replies.push(IAC, DONT, byte);
          }
          continue;
        case State.Subnegotiation:
          if (byte === IAC) this.#state = State.SubnegotiationCommand;
          // Real ones are a few bytes (window size, terminal type); past the
          // bound this is no telnet, and its bytes go back to the line check.
          else if (++this.#subnegotiationBytes > MAX_SUBNEGOTIATION_BYTES) this.#state = State.Data;
          continue;
        case State.SubnegotiationCommand:
          this.#state = byte === SE ? State.Data : State.Subnegotiation;
          continue;
      }
    }
    return {
      data: data.subarray(0, out),
      reply: replies.length > 0 ? new Uint8Array(replies) : undefined,
    };
  }
}
