/**
 * The shared buffer helper: netchat's message limits and the code that turns a
 * byte stream into messages and back.
 *
 * A message is at most 255 bytes of UTF-8 text followed by "\n" (a "\r" just
 * before the "\n" is accepted and dropped), so every message fits in one
 * 256-byte buffer, the size the original C tutorial used. Read buffers may be
 * larger than that for speed; 256 bytes is the message limit, not a read size.
 *
 * @example
 * ```ts
 * import { LineFramer, LINE_TOO_LONG } from "./line_buffer.ts";
 * const framer = new LineFramer();
 * for (const frame of framer.push(new TextEncoder().encode("hi\nthere\n"))) {
 *   if (frame !== LINE_TOO_LONG) console.log(new TextDecoder().decode(frame));
 * }
 * ```
 * @module
 */
import { isUtf8 } from "node:buffer";

/** The 256-byte buffer of the original: one message and its "\n". */
export const MAX_BUFFER_SIZE = 256;
/** The most text bytes a peer may send in one message, "\n" not counted. */
export const MAX_MESSAGE_BYTES = MAX_BUFFER_SIZE - 1;
/** A name is 1-32 characters; in UTF-8 that is at most 4 bytes each. */
export const MAX_NAME_CHARS = 32;
export const MAX_NAME_BYTES = MAX_NAME_CHARS * 4;
/**
 * The longest line a server sends: a relayed `<name> text` with the longest
 * name and message (1 + 128 + 2 + 255 = 386 bytes). Clients accept incoming
 * lines up to this bound, rounded up to leave room for notices.
 */
export const MAX_INCOMING_LINE_BYTES = 512;
/** How much one `read()` asks for. Larger than a message so one read can frame many. */
export const READ_BUFFER_SIZE = 16 * 1024;

const NEWLINE = 0x0a;
const EMPTY = new Uint8Array(0);
const CARRIAGE_RETURN = 0x0d;

/** What {@linkcode LineFramer.push} yields for a line over the limit (dropped whole). */
export const LINE_TOO_LONG = Symbol("line too long");
/** One framed line (a view, without "\n" or "\r"), or the over-long marker. */
export type Frame = Uint8Array | typeof LINE_TOO_LONG;

/**
 * Cuts a byte stream into lines, whatever the chunk boundaries: one chunk may
 * hold half a line or many lines.
 *
 * An unfinished line is kept across chunks, but never more than the limit:
 * past it the framer discards bytes until the next "\n" and then reports
 * {@linkcode LINE_TOO_LONG} once, so the lines after an over-long one are kept.
 */
export class LineFramer {
  readonly #maxLineBytes: number;
  // The unfinished line from earlier chunks; room for the limit plus a "\r".
  // Two buffers, swapped when a line is finished from one, so that the line
  // stays valid while the rest of the same chunk starts the next partial line.
  // Both are made on first use: most connections never split a line, and an
  // idle server holds thousands of framers.
  #partial: Uint8Array = EMPTY;
  #spare: Uint8Array = EMPTY;
  #partialLength = 0;
  #discarding = false;

  constructor(maxLineBytes: number = MAX_MESSAGE_BYTES) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Bytes held for an unfinished line (never more than the limit plus one). */
  get bufferedBytes(): number {
    return this.#partialLength;
  }

  /**
   * The fast path for handling a chunk's lines as one block: if the framer
   * holds no unfinished line, returns where the chunk's last complete line
   * ends, provided every line up to there is within the limit and there is no
   * "\r" among them. Otherwise, or with no complete line, returns 0. Changes
   * nothing: the caller handles `chunk.subarray(0, end)` and pushes the rest.
   */
  wholeLinesEnd(chunk: Uint8Array): number {
    if (this.#partialLength > 0 || this.#discarding) return 0;
    const end = chunk.lastIndexOf(NEWLINE) + 1;
    // Each line's "\n" is at most the limit past its start, so jump to the last
    // "\n" within that reach: short lines are passed several at a time, and
    // finding none there means the line is too long.
    for (let start = 0; start < end;) {
      const newline = chunk.lastIndexOf(NEWLINE, start + this.#maxLineBytes);
      if (newline < start) return 0;
      start = newline + 1;
    }
    // A "\r" before a "\n" must be dropped, which push() does line by line; a
    // "\r" anywhere sends the chunk that way, as one scan is cheaper than
    // looking at every line's end.
    const carriageReturn = chunk.indexOf(CARRIAGE_RETURN);
    if (carriageReturn !== -1 && carriageReturn < end) return 0;
    return end;
  }

  /**
   * Frames `chunk`. Returned lines are views into `chunk` or into the framer's
   * own buffer: use them before the next `push()` and before `chunk` is reused.
   */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      if (newline === -1) {
        this.#keepPartial(chunk.subarray(start));
        break;
      }
      frames.push(this.#finishLine(chunk.subarray(start, newline)));
      start = newline + 1;
    }
    return frames;
  }

  // The hard case: a line split across chunks is put together in #partial.
  #finishLine(tail: Uint8Array): Frame {
    if (this.#discarding) {
      this.#discarding = false;
      return LINE_TOO_LONG;
    }
    let line = tail;
    if (this.#partialLength > 0) {
      const total = this.#partialLength + tail.length;
      if (total > this.#partial.length) {
        this.#partialLength = 0;
        return LINE_TOO_LONG;
      }
      this.#partial.set(tail, this.#partialLength);
      line = this.#partial.subarray(0, total);
      [this.#partial, this.#spare] = [this.#spare, this.#partial];
      this.#partialLength = 0;
    }
    if (line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN) {
      line = line.subarray(0, line.length - 1);
    }
    return line.length > this.#maxLineBytes ? LINE_TOO_LONG : line;
  }

  #keepPartial(rest: Uint8Array): void {
    if (this.#discarding) return;
    if (this.#partial === EMPTY) {
      this.#partial = new Uint8Array(this.#maxLineBytes + 1);
      this.#spare = new Uint8Array(this.#maxLineBytes + 1);
    }
    const total = this.#partialLength + rest.length;
    if (total > this.#partial.length) {
      // Over the limit with no "\n" yet: drop it now instead of buffering more.
      this.#discarding = true;
      this.#partialLength = 0;
      return;
    }
    this.#partial.set(rest, this.#partialLength);
    this.#partialLength = total;
  }
}

/** Anything with Deno's `read()` contract: `null` at end of stream. */
export interface Reader {
  read(buffer: Uint8Array): Promise<number | null>;
}

/**
 * Reads `reader` to its end and yields each framed line as a fresh copy (or
 * {@linkcode LINE_TOO_LONG}). An unfinished last line without "\n" is dropped,
 * as a message only counts once its "\n" arrives.
 */
export async function* readLines(
  reader: Reader,
  maxLineBytes: number = MAX_MESSAGE_BYTES,
): AsyncGenerator<Frame> {
  const framer = new LineFramer(maxLineBytes);
  const buffer = new Uint8Array(READ_BUFFER_SIZE);
  while (true) {
    const n = await reader.read(buffer);
    if (n === null) return;
    for (const frame of framer.push(buffer.subarray(0, n))) {
      yield frame === LINE_TOO_LONG ? frame : frame.slice();
    }
  }
}

/** Is `byte` the second, third or fourth byte of a UTF-8 character? */
function isContinuationByte(byte: number): boolean {
  return (byte & 0xc0) === 0x80;
}

/**
 * Where to cut `bytes` so the first piece is at most `limit` bytes and no
 * UTF-8 character is split: steps back from `limit` over continuation bytes.
 */
export function utf8CutPoint(bytes: Uint8Array, limit: number): number {
  if (bytes.length <= limit) return bytes.length;
  let cut = limit;
  // A character is at most 4 bytes, so look back at most 3.
  while (cut > limit - 3 && cut > 0 && isContinuationByte(bytes[cut])) cut--;
  // Not UTF-8 after all (4+ continuation bytes): cut at the limit.
  return isContinuationByte(bytes[cut]) || cut === 0 ? limit : cut;
}

/**
 * Splits a user's line into messages of at most `limit` bytes without ever
 * splitting a multi-byte character. An empty line is one empty message.
 */
export function splitMessage(
  line: Uint8Array,
  limit: number = MAX_MESSAGE_BYTES,
): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let rest = line;
  do {
    const cut = utf8CutPoint(rest, limit);
    pieces.push(rest.subarray(0, cut));
    rest = rest.subarray(cut);
  } while (rest.length > 0);
  return pieces;
}

// From this size on the runtime's native check (simdutf: about 20 GB/s on
// ASCII) beats the loop below despite its cost per call (about 40 ns).
const NATIVE_CHECK_BYTES = 128;

/**
 * Is `bytes` well-formed UTF-8 (no overlongs, no surrogates, nothing past
 * U+10FFFF)? Checked without decoding, so the echo path never builds strings.
 */
export function isValidUtf8(bytes: Uint8Array): boolean {
  if (bytes.length >= NATIVE_CHECK_BYTES) return isUtf8(bytes);
  const length = bytes.length;
  let i = 0;
  while (i < length) {
    const byte = bytes[i];
    if (byte < 0x80) {
      i++;
      continue;
    }
    let needed: number;
    let min = 0x80;
    let max = 0xbf;
    if (byte >= 0xc2 && byte <= 0xdf) {
      needed = 1;
    } else if (byte >= 0xe0 && byte <= 0xef) {
      needed = 2;
      if (byte === 0xe0) min = 0xa0; // overlong
      if (byte === 0xed) max = 0x9f; // UTF-16 surrogates
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      needed = 3;
      if (byte === 0xf0) min = 0x90; // overlong
      if (byte === 0xf4) max = 0x8f; // above U+10FFFF
    } else {
      return false;
    }
    if (i + needed >= length) return false; // truncated character
    const second = bytes[i + 1];
    if (second < min || second > max) return false;
    for (let k = 2; k <= needed; k++) {
      if (!isContinuationByte(bytes[i + k])) return false;
    }
    i += needed + 1;
  }
  return true;
}

// C0 controls but tab, DEL, and C1 controls: together they make every terminal
// escape sequence (ESC, CSI U+009B, OSC U+009D ...), so none survives.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;
// deno-lint-ignore no-control-regex -- the same set, for a yes/no test
const CONTROL_CHARACTER = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/;

/** Removes control characters (C0 except tab, DEL, C1); keeps all other Unicode. */
export function sanitize(text: string): string {
  return text.replace(CONTROL_CHARACTERS, "");
}

/** Does `text` hold a character that {@linkcode sanitize} would remove? */
export function hasControlCharacters(text: string): boolean {
  return CONTROL_CHARACTER.test(text);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const lenientDecoder = new TextDecoder("utf-8", { fatal: false });

/** Encodes a line of text and its "\n". */
export function encodeLine(text: string): Uint8Array {
  return encoder.encode(text + "\n");
}

/** Decodes bytes already checked with {@linkcode isValidUtf8}. */
export function decodeUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Decodes bytes from an untrusted peer for display: invalid sequences become
 * U+FFFD and control characters are removed.
 */
export function toDisplayText(bytes: Uint8Array): string {
  return sanitize(lenientDecoder.decode(bytes));
}

/**
 * Writes all of `bytes`: `write()` may take only part of them, so loop until
 * the kernel has everything.
 */
export async function writeAll(
  writer: { write(bytes: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await writer.write(bytes.subarray(written));
  }
}

/**
 * Reads what a user types (or pipes) and yields it as messages of at most
 * `limit` bytes: one per line, a long line cut into several at character
 * boundaries as soon as enough of it has arrived, so memory stays bounded
 * however long the line. A last line without "\n" is sent too: it is what the
 * user typed before end of input.
 */
export async function* readInputMessages(
  reader: Reader,
  limit: number = MAX_MESSAGE_BYTES,
): AsyncGenerator<Uint8Array> {
  const buffer = new Uint8Array(READ_BUFFER_SIZE);
  let carry = new Uint8Array(0);
  while (true) {
    const n = await reader.read(buffer);
    if (n === null) break;
    let data = buffer.subarray(0, n);
    if (carry.length > 0) {
      const joined = new Uint8Array(carry.length + n);
      joined.set(carry);
      joined.set(data, carry.length);
      data = joined;
    }
    let start = 0;
    for (
      let newline = data.indexOf(NEWLINE);
      newline !== -1;
      newline = data.indexOf(NEWLINE, start)
    ) {
      yield* copies(splitMessage(stripCarriageReturn(data.subarray(start, newline)), limit));
      start = newline + 1;
    }
    let tail = data.subarray(start);
    // Keep up to limit + 1 bytes: the extra one may be the "\r" of a "\r\n"
    // still on its way, which must not become a message of its own.
    while (tail.length > limit + 1) {
      const cut = utf8CutPoint(tail, limit);
      yield tail.slice(0, cut);
      tail = tail.subarray(cut);
    }
    carry = tail.slice();
  }
  const last = stripCarriageReturn(carry);
  if (last.length > 0) yield* copies(splitMessage(last, limit));
}

function stripCarriageReturn(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN
    ? line.subarray(0, line.length - 1)
    : line;
}

function* copies(pieces: Uint8Array[]): Generator<Uint8Array> {
  for (const piece of pieces) yield piece.slice();
}
