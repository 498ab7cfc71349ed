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
import { LINE_SCAN_WASM_BASE64 } from "./line_scan_wasm.ts";

/** The 256-byte buffer of the original: one message and its "\n". */
export const MAX_BUFFER_SIZE = 256;
/** The most text bytes a peer may send in one message, "\n" not counted. */
export const MAX_MESSAGE_BYTES = MAX_BUFFER_SIZE - 1;
/** A name is 1-32 characters; in UTF-8 that is at most 4 bytes each. */
export const MAX_NAME_CHARS = 32;
export const MAX_NAME_BYTES = MAX_NAME_CHARS * 4;
/**
 * The longest line `client.ts` takes from a server, "\n" not counted: 64 KiB.
 * A netchat server sends at most 386 bytes (a relayed `<name> text` with the
 * longest name and message: 1 + 128 + 2 + 255), but the client also talks to
 * any line-based TCP service, whose lines may be far longer. Still a bound: a
 * longer line is reported and dropped, never buffered whole.
 */
export const MAX_INCOMING_LINE_BYTES = 64 * 1024;
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
  /** While discarding: the last byte discarded was a "\r". */
  #discardedCarriageReturn = false;

  constructor(maxLineBytes: number = MAX_MESSAGE_BYTES) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Bytes held for an unfinished line (never more than the limit plus one). */
  get bufferedBytes(): number {
    return this.#partialLength;
  }

  /** Does the unfinished line held end in a "\r" (whose "\n" may be in the next chunk)? */
  get endsInCarriageReturn(): boolean {
    if (this.#discarding) return this.#discardedCarriageReturn;
    return this.#partialLength > 0 && this.#partial[this.#partialLength - 1] === CARRIAGE_RETURN;
  }

  /**
   * The end of the stream: what is held of an unfinished line is the last
   * line (a final "\r" dropped), or {@linkcode LINE_TOO_LONG} if it was over
   * the limit; `undefined` when nothing is held. The framer is empty after.
   */
  finish(): Frame | undefined {
    if (this.#discarding) {
      this.#discarding = false;
      return LINE_TOO_LONG;
    }
    if (this.#partialLength === 0) return undefined;
    let length = this.#partialLength;
    this.#partialLength = 0;
    if (this.#partial[length - 1] === CARRIAGE_RETURN) length--;
    return length > this.#maxLineBytes ? LINE_TOO_LONG : this.#partial.subarray(0, length);
  }

  /**
   * The fast path for handling a chunk's lines as one block: if the framer
   * holds no unfinished line, returns where the chunk's last complete line
   * ends, provided every line up to there is within the limit and there is no
   * "\r" among them (and, with `options.utf8`, they are well-formed UTF-8):
   * {@linkcode wholeLinesEnd}. Otherwise, or with no complete line, returns
   * 0. Changes nothing: the caller handles `chunk.subarray(0, end)` and
   * pushes the rest.
   */
  wholeLinesEnd(chunk: Uint8Array, options: WholeLinesOptions = {}): number {
    if (this.#partialLength > 0 || this.#discarding) return 0;
    return wholeLinesEnd(chunk, this.#maxLineBytes, options);
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
    if (this.#discarding) {
      if (rest.length > 0) {
        this.#discardedCarriageReturn = rest[rest.length - 1] === CARRIAGE_RETURN;
      }
      return;
    }
    if (this.#partial === EMPTY) {
      this.#partial = new Uint8Array(this.#maxLineBytes + 1);
      this.#spare = new Uint8Array(this.#maxLineBytes + 1);
    }
    const total = this.#partialLength + rest.length;
    if (total > this.#partial.length) {
      // Over the limit with no "\n" yet: drop it now instead of buffering more.
      this.#discarding = true;
      this.#discardedCarriageReturn = rest[rest.length - 1] === CARRIAGE_RETURN;
      this.#partialLength = 0;
      return;
    }
    this.#partial.set(rest, this.#partialLength);
    this.#partialLength = total;
  }
}

/** What {@linkcode wholeLinesEnd} also asks of the lines. */
export interface WholeLinesOptions {
  /**
   * The lines must be well-formed UTF-8 too, as {@linkcode isValidUtf8}
   * checks it: echo's fast path, which sends them back as they are.
   */
  utf8?: boolean;
}

/**
 * Where the last complete line of `chunk` ends (just past its last "\n"),
 * provided that every line up to there is at most `maxLineBytes` bytes ("\n"
 * not counted), that no "\r" comes before that end and, with
 * `options.utf8`, that those lines are well-formed UTF-8; otherwise, or with
 * no "\n" at all, 0. Lines that pass can go on as one block, as they came;
 * the others need {@linkcode LineFramer.push}, which drops a "\r" before a
 * "\n" and reports each bad line.
 *
 * Chunks up to 64 KiB are scanned by `line_scan.wat`, WebAssembly with
 * 128-bit SIMD, in one pass: 64 bytes of plain text a test, 16 bytes a test
 * around line ends and other characters; about 16 GB/s here for ASCII,
 * against 3-4 GB/s for `Uint8Array.prototype.indexOf`, which was most of the
 * echo path's own cost (issue 15's profile), and without the call into
 * `node:buffer`'s `isUtf8` (about 80 ns a call). Longer chunks take the
 * JavaScript path.
 */
export function wholeLinesEnd(
  chunk: Uint8Array,
  maxLineBytes: number = MAX_MESSAGE_BYTES,
  options: WholeLinesOptions = {},
): number {
  if (chunk.length <= lineScan.memory.length) {
    // Copying in costs about a tenth of the scan.
    lineScan.memory.set(chunk);
    return lineScan.wholeLinesEnd(chunk.length, maxLineBytes, options.utf8 ? 1 : 0);
  }
  const end = chunk.lastIndexOf(NEWLINE) + 1;
  // Each line's "\n" is at most the limit past its start, so jump to the last
  // "\n" within that reach: short lines are passed several at a time, and
  // finding none there means the line is too long.
  for (let start = 0; start < end;) {
    const newline = chunk.lastIndexOf(NEWLINE, start + maxLineBytes);
    if (newline < start) return 0;
    start = newline + 1;
  }
  const carriageReturn = chunk.indexOf(CARRIAGE_RETURN);
  if (carriageReturn !== -1 && carriageReturn < end) return 0;
  return !options.utf8 || isValidUtf8(chunk.subarray(0, end)) ? end : 0;
}

/** `line_scan.wat`, instantiated once: its memory and its one function. */
const lineScan = (() => {
  const bytes = Uint8Array.from(atob(LINE_SCAN_WASM_BASE64), (char) => char.charCodeAt(0));
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return {
    // The module never grows its memory, so this view stays valid.
    memory: new Uint8Array((exports.memory as WebAssembly.Memory).buffer),
    wholeLinesEnd: exports.whole_lines_end as (
      length: number,
      maxLine: number,
      utf8: 0 | 1,
    ) => number,
  };
})();

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
 * UTF-8 character (code point) is split: steps back from `limit` over
 * continuation bytes. Splitting cuts with {@linkcode graphemeCutPoint}, which
 * keeps user-perceived characters whole and cuts here only inside one that is
 * longer than `limit` on its own.
 */
export function utf8CutPoint(bytes: Uint8Array, limit: number): number {
  if (bytes.length <= limit) return bytes.length;
  let cut = limit;
  // A character is at most 4 bytes, so look back at most 3.
  while (cut > limit - 3 && cut > 0 && isContinuationByte(bytes[cut])) cut--;
  // Not UTF-8 after all (4+ continuation bytes): cut at the limit.
  return isContinuationByte(bytes[cut]) || cut === 0 ? limit : cut;
}

/** The most bytes one character takes in UTF-8. */
const MAX_UTF8_BYTES = 4;
const SLASH = 0x2f;

// User-perceived characters are extended grapheme clusters, as Unicode
// Standard Annex #29 ("Unicode Text Segmentation") defines them; Deno's
// Intl.Segmenter finds them with ICU.
const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });
// Keeps a leading U+FEFF: offsets into the text must match the bytes.
const exactDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

// Code points, as [first, last], between two of which UAX #29 always puts a
// cluster boundary (rule GB999), whatever comes before: they are not Prepend,
// Extend, SpacingMark, ZWJ, Regional_Indicator, Hangul jamo or Indic conjunct
// letters. Most text (ASCII, Latin, Greek, Cyrillic, Chinese, Japanese,
// Korean) is thus cut without the segmenter. tests/line_buffer_test.ts checks
// every one of them against Intl.Segmenter.
const PLAIN_RANGES = [
  [0x20, 0x7e], // ASCII but controls
  [0xa0, 0x2ff], // Latin-1, Latin Extended-A and -B, IPA, spacing modifier letters
  [0x370, 0x482], // Greek and Coptic, Cyrillic (U+0483-U+0489 combine)
  [0x48a, 0x52f], // Cyrillic and its supplement
  [0x3000, 0x3029], // CJK symbols and punctuation (U+302A-U+302F combine)
  [0x3041, 0x3096], // Hiragana (U+3099 and U+309A combine)
  [0x30a0, 0x30ff], // Katakana
  [0x3400, 0x4dbf], // CJK Unified Ideographs Extension A
  [0x4e00, 0x9fff], // CJK Unified Ideographs
  [0xac00, 0xd7a3], // Hangul syllables (LV and LVT: only jamo join them)
  [0xff01, 0xff60], // full-width forms
  [0x20000, 0x3ffff], // planes 2 and 3: CJK ideographs
];

function isPlain(codePoint: number): boolean {
  for (const [first, last] of PLAIN_RANGES) {
    if (codePoint < first) return false;
    if (codePoint <= last) return true;
  }
  return false;
}

/** The length of the UTF-8 character that `lead` begins, or 0 if `lead` begins none. */
function characterLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/** The code point whose UTF-8 begins at `start`, or -1. */
function codePointAt(bytes: Uint8Array, start: number): number {
  const length = characterLength(bytes[start]);
  if (length === 0 || start + length > bytes.length) return -1;
  let codePoint = length === 1 ? bytes[start] : bytes[start] & (0xff >> (length + 1));
  for (let i = start + 1; i < start + length; i++) codePoint = (codePoint << 6) | (bytes[i] & 0x3f);
  return codePoint;
}

/** The code point whose UTF-8 ends at `end`, or -1. */
function codePointBefore(bytes: Uint8Array, end: number): number {
  let start = end - 1;
  while (start > end - MAX_UTF8_BYTES && start > 0 && isContinuationByte(bytes[start])) start--;
  return start >= 0 && characterLength(bytes[start]) === end - start
    ? codePointAt(bytes, start)
    : -1;
}

/** How many bytes UTF-16 code units `from` to `to` of `text` (well-formed) take in UTF-8. */
function utf8ByteLength(text: string, from: number, to: number): number {
  let length = 0;
  for (let i = from; i < to; i++) {
    const unit = text.charCodeAt(i);
    // Each half of a surrogate pair counts 2 of its character's 4 bytes.
    length += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 2 : 3;
  }
  return length;
}

/**
 * Where to cut `bytes` (UTF-8, beginning at a user-perceived character, such
 * as a line's start or an earlier cut) so the first piece is at most `limit`
 * bytes and no user-perceived character is split: the last extended grapheme
 * cluster boundary (UAX #29) at or before `limit`, in bytes. A flag (🇧🇪), an
 * emoji ZWJ sequence (👨‍👩‍👧‍👦), a skin tone (👋🏽), a letter and its combining
 * marks (é as e + U+0301), Hangul jamo and Devanagari conjuncts (क्ष) stay
 * whole. Returns `bytes.length` when it all fits. Only a cluster longer than
 * `limit` on its own is cut inside, between code points
 * ({@linkcode utf8CutPoint}); so is anything that is not UTF-8.
 *
 * Reads no byte past the character that begins at the cut, so a stream may
 * cut once `limit + 4` bytes have arrived: the result is the same as with the
 * whole line. Between two plain characters (ASCII, Latin, Greek, Cyrillic,
 * CJK, Hangul syllables) it answers from those two alone; otherwise it asks
 * `Intl.Segmenter` about the first `limit` bytes or so, never more (about
 * 1.5 µs a cut).
 *
 * @example
 * ```ts
 * import { graphemeCutPoint } from "./line_buffer.ts";
 * const bytes = new TextEncoder().encode("ab🇧🇪"); // 2 + 8 bytes
 * graphemeCutPoint(bytes, 6); // 2: the flag's two halves stay together
 * ```
 */
export function graphemeCutPoint(bytes: Uint8Array, limit: number): number {
  if (bytes.length <= limit) return bytes.length;
  const cut = utf8CutPoint(bytes, limit);
  // Every rule of UAX #29 has one character on its right: the one after the
  // cut is the last byte that can matter.
  const next = cut + characterLength(bytes[cut]);
  if (next === cut || next > bytes.length) return cut; // not UTF-8
  // Fast path: two plain characters always have a boundary between them.
  if (isPlain(codePointBefore(bytes, cut)) && isPlain(codePointAt(bytes, cut))) return cut;
  // The segmenter gets the piece from its start, a boundary, for the context
  // some rules need: regional indicators pair up from the start of their run,
  // an emoji ZWJ sequence or an Indic conjunct spans many characters.
  const head = bytes.subarray(0, next);
  if (!isValidUtf8(head)) return cut;
  const text = exactDecoder.decode(head);
  const after = text.length - (next - cut === MAX_UTF8_BYTES ? 2 : 1);
  const start = graphemes.segment(text).containing(after)!.index;
  // At `after`: the cut is a boundary. At 0: the first cluster alone is over the limit.
  if (start === after || start === 0) return cut;
  return cut - utf8ByteLength(text, start, after);
}

/** How {@linkcode splitMessage} and {@linkcode readInputMessages} cut a line longer than a message. */
export interface SplitOptions {
  /**
   * netchat's rule for a line longer than a message: it is text, never a
   * command, however it is cut. Each piece is then at most `limit - 1` bytes
   * and one that begins with "/" is sent with another "/" in front, which the
   * server drops (a line beginning with "//" is text: protocol.ts,
   * `messageText`). A line that fits a message is sent as typed, so `/quit`
   * is still a command. Off by default: a plain line service (the echo mode)
   * would get the "/" too.
   */
  piecesAsText?: boolean;
}

/**
 * Splits a user's line into messages of at most `limit` bytes, cutting only
 * between user-perceived characters ({@linkcode graphemeCutPoint}). A line
 * that fits is one message, as it is; an empty line is one empty message.
 * Pieces are views into `line`, but for those given a "/" in front
 * ({@linkcode SplitOptions.piecesAsText}).
 *
 * @example
 * ```ts
 * import { splitMessage } from "./line_buffer.ts";
 * const line = new TextEncoder().encode("x".repeat(255) + "/quit");
 * splitMessage(line, 255, { piecesAsText: true }); // "x" * 254, then "x/quit"
 * ```
 */
export function splitMessage(
  line: Uint8Array,
  limit: number = MAX_MESSAGE_BYTES,
  options: SplitOptions = {},
): Uint8Array[] {
  if (line.length <= limit) return [line];
  return splitPieces(line, limit, options.piecesAsText ?? false);
}

/** Cuts `rest`, a line longer than a message or what is left of one, into all its pieces. */
function splitPieces(rest: Uint8Array, limit: number, asText: boolean): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  while (rest.length > 0) {
    const [piece, length] = cutPiece(rest, limit, asText);
    pieces.push(piece);
    rest = rest.subarray(length);
  }
  return pieces;
}

/**
 * The first piece of `rest` (a line longer than a message, or what is left of
 * one) and how many bytes of `rest` it takes. As text, it is cut a byte short
 * of `limit`, so that one beginning with "/" has room for the "/" in front.
 */
function cutPiece(rest: Uint8Array, limit: number, asText: boolean): [Uint8Array, number] {
  const size = asText ? limit - 1 : limit;
  if (size < 1) throw new RangeError(`cannot split into messages of ${limit} bytes`);
  let cut = graphemeCutPoint(rest, size);
  if (cut < rest.length) cut = beforeEscape(rest, cut);
  const piece = rest.subarray(0, cut);
  if (!asText || piece[0] !== SLASH) return [piece, cut];
  const marked = new Uint8Array(cut + 1);
  marked[0] = SLASH;
  marked.set(piece, 1);
  return [marked, cut];
}

const ESC = 0x1b;

/**
 * Moves a cut back to before the last escape sequence introducer in the
 * piece (ESC, or the C1 SS2, SS3, DCS, SOS, CSI, OSC, PM, APC in UTF-8), so a
 * sequence is never cut in two (one longer than a piece still is): each half would reach the receiver as
 * visible text once its introducer is stripped (ECMA-48, section 5.3). A
 * control character is a grapheme cluster of its own (UAX #29, GB4 and GB5),
 * so the new cut is still between clusters. Never moves a cut to 0.
 */
function beforeEscape(bytes: Uint8Array, cut: number): number {
  for (let i = cut - 1; i > 0; i--) {
    const byte = bytes[i];
    const c1 = byte === 0xc2 && i + 1 < cut ? bytes[i + 1] : 0;
    if (byte === ESC || c1 === 0x8e || c1 === 0x8f || c1 === 0x90 || (c1 >= 0x98 && c1 !== 0x9c)) {
      // The last sequence in the piece: moved only if it runs up to the cut.
      return sanitize(lenientDecoder.decode(bytes.subarray(i, cut))) === "" ? i : cut;
    }
  }
  return cut;
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

// What sanitize() removes: C0 controls but tab, DEL, C1 controls (NEL U+0085
// among them), and Unicode's LINE SEPARATOR U+2028 and PARAGRAPH SEPARATOR
// U+2029, which programs that split on Unicode line breaks (UAX #14: classes BK)
// would read as the end of a line, and the bidirectional embedding, override
// and isolate controls (U+202A-U+202E, U+2066-U+2069, UAX #9), which reorder
// what a terminal shows after them ("Trojan Source", CVE-2021-42574). Every
// escape sequence begins with one of them (ESC or a C1 control), so text
// without one is left as it is.
const CONTROL_CHARACTER =
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

// Whole escape sequences, then any control left, in one pass. The forms are
// ECMA-48 5th ed. (1991), each with its 7-bit (ESC Fe) and 8-bit (C1) opening:
// - §5.4 control sequence: CSI (ESC [ or U+009B), parameter bytes 0x30-0x3F,
//   intermediate bytes 0x20-0x2F, one final byte 0x40-0x7E. Parameters after an
//   intermediate are malformed, yet terminals (vt100.net's DEC parser,
//   "csi ignore") still swallow them up to the final byte, so any mix of
//   0x20-0x3F is taken. A sequence cut off before its final byte goes too.
// - §5.6 control strings: OSC (ESC ] or U+009D) ends with BEL (xterm's
//   terminator) or ST (ESC \ or U+009C); DCS, SOS, PM, APC (ESC P, X, ^, _ or
//   U+0090, U+0098, U+009E, U+009F) end with ST. An ESC that is not an ST ends
//   the string as a terminal does and starts the next sequence; a string with
//   no terminator runs to the end of the text.
// - §5.3 and §8.3.125-126 SS2, SS3 (ESC N, ESC O or U+008E, U+008F) with the
//   one graphic character they shift (arrow keys in application mode send
//   ESC O A).
// - §5.3 / ECMA-35 §13 other escape sequences: ESC, intermediates 0x20-0x2F,
//   a final 0x30-0x7E (ESC 7, ESC ( B, ESC c); ESC alone is just a control.
// - Last, one control character on its own (the set of CONTROL_CHARACTER).
// Removal can never make a new sequence, as every control goes: sanitize() is
// idempotent, and changes a text exactly when CONTROL_CHARACTER finds one.
const ESCAPE_SEQUENCES = new RegExp(
  [
    String.raw`(?:\x1b\[|\x9b)[\x20-\x3f]*[\x40-\x7e]?`,
    String.raw`(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?`,
    String.raw`(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?`,
    String.raw`(?:\x1b[NO]|[\x8e\x8f])[\x20-\x7e]?`,
    String.raw`\x1b[\x20-\x2f]*[\x30-\x7e]?`,
    CONTROL_CHARACTER.source,
  ].join("|"),
  "g",
);

/**
 * Removes whole terminal escape sequences (ECMA-48 CSI, OSC, DCS, SOS, PM,
 * APC, SS2, SS3 and other ESC sequences, 7- and 8-bit), then every other
 * control character (C0 but tab, DEL, C1), U+2028, U+2029 and the bidi
 * embedding, override and isolate controls; keeps all other
 * Unicode. What is left is text: no piece of a sequence, no line break.
 *
 * @example
 * ```ts
 * import { sanitize } from "./line_buffer.ts";
 * console.log(sanitize("\x1b[31mred\x1b[0m \x1b[A\x1b[Dagain")); // "red again"
 * ```
 */
export function sanitize(text: string): string {
  // Fast path, the chat's usual line: nothing to remove, one scan.
  if (!CONTROL_CHARACTER.test(text)) return text;
  return text.replace(ESCAPE_SEQUENCES, "");
}

/**
 * Does `text` hold something {@linkcode sanitize} would remove? True exactly
 * when `sanitize(text) !== text`.
 */
export function hasControlCharacters(text: string): boolean {
  return CONTROL_CHARACTER.test(text);
}

const encoder = new TextEncoder();
// ignoreBOM: a U+FEFF at the start of a line is part of it, not a byte-order
// mark to drop: dropped, "\uFEFF/quit" would read as the command /quit.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const lenientDecoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Encodes a line of text and its "\n". The bytes are a view into a shared
 * slab ({@linkcode allocateBytes}): treat them as read-only.
 */
export function encodeLine(text: string): Uint8Array {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit (4 per surrogate pair).
  const most = text.length * 3 + 1;
  if (most > MAX_SLAB_PIECE_BYTES) return encoder.encode(text + "\n");
  if (slabUsed + most > slab.length) newSlab();
  const { written } = encoder.encodeInto(text, slab.subarray(slabUsed));
  slab[slabUsed + written] = NEWLINE;
  const line = slab.subarray(slabUsed, slabUsed + written + 1);
  slabUsed += written + 1;
  return line;
}

// A new ArrayBuffer costs Deno 2.9.6 about a microsecond, whatever its size
// (measured: 0.8-1.1 µs for 64 or 266 bytes, counting the collections that
// buffers outside the heap bring on), against about 20 ns for a view: short-lived
// buffers (a relayed line, a batch of them) are carved from shared slabs, as
// Node's Buffer pool does for small buffers. A slab is freed once no view of
// it is left; pieces are never reused, so each is zeroed when carved.
const SLAB_BYTES = 64 * 1024;
const MAX_SLAB_PIECE_BYTES = 8 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;
/** Every slab's buffer, so {@linkcode unpinned} can tell a piece from a buffer of its own. */
const slabs = new WeakSet<ArrayBufferLike>();

function newSlab(): void {
  slab = new Uint8Array(SLAB_BYTES);
  slabs.add(slab.buffer);
  slabUsed = 0;
}

/**
 * `bytes` itself, or, if it is a piece of a shared slab ({@linkcode
 * allocateBytes}), a copy of its own: for bytes that may be kept long (queued
 * for a peer that does not read), since a piece keeps its whole 64 KiB slab
 * alive however small it is.
 */
export function unpinned(bytes: Uint8Array): Uint8Array {
  return slabs.has(bytes.buffer) ? bytes.slice() : bytes;
}

/**
 * The bytes of `pieces` one after the other, in a buffer of
 * {@linkcode allocateBytes} (`size` is their total length, if known).
 */
export function joinBytes(pieces: readonly Uint8Array[], size?: number): Uint8Array {
  size ??= pieces.reduce((total, piece) => total + piece.length, 0);
  const joined = allocateBytes(size);
  let offset = 0;
  for (const piece of pieces) {
    joined.set(piece, offset);
    offset += piece.length;
  }
  return joined;
}

/**
 * A zeroed buffer of `size` bytes for short-lived use: for up to 8 KiB, a view
 * into a shared 64 KiB slab (one allocation serves many), beyond that a
 * buffer of its own. A long-lived view keeps its whole slab alive, so a
 * buffer kept for a connection's life (its read buffer) should not come from
 * here.
 */
export function allocateBytes(size: number): Uint8Array {
  if (size > MAX_SLAB_PIECE_BYTES) return new Uint8Array(size);
  if (slabUsed + size > slab.length) newSlab();
  const piece = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return piece;
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
 * `limit` bytes: one per line, a long line cut into several between
 * user-perceived characters as {@linkcode splitMessage} cuts it (with the same
 * `options`), as soon as enough of it has arrived, so memory stays bounded
 * (at most `limit` + 4 bytes of a line are held) however long the line. A last
 * line without "\n" is sent too: it is what the user typed before end of input.
 */
export async function* readInputMessages(
  reader: Reader,
  limit: number = MAX_MESSAGE_BYTES,
  options: SplitOptions = {},
): AsyncGenerator<Uint8Array> {
  const asText = options.piecesAsText ?? false;
  const buffer = new Uint8Array(READ_BUFFER_SIZE);
  let carry = new Uint8Array(0);
  // Pieces of the line in `carry` have been sent: the rest of it is a piece
  // too, however short (as text, it must not run as a command).
  let continued = false;
  const pieces = (line: Uint8Array) =>
    continued || line.length > limit ? splitPieces(line, limit, asText) : [line];
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
      yield* copies(pieces(stripCarriageReturn(data.subarray(start, newline))));
      continued = false;
      start = newline + 1;
    }
    let tail = data.subarray(start);
    // Past limit + 4 bytes the line is longer than a message even if a "\r\n"
    // ends it right there (that "\r" never becomes a message of its own), and
    // the character after any cut at or before the limit has arrived whole:
    // that is all graphemeCutPoint reads, so the piece cut now is the one the
    // whole line would give, and a cluster going on in the next read is kept.
    while (tail.length > limit + MAX_UTF8_BYTES) {
      const [piece, length] = cutPiece(tail, limit, asText);
      yield piece.slice();
      tail = tail.subarray(length);
      continued = true;
    }
    carry = tail.slice();
  }
  const last = stripCarriageReturn(carry);
  if (last.length > 0) yield* copies(pieces(last));
}

function stripCarriageReturn(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN
    ? line.subarray(0, line.length - 1)
    : line;
}

function* copies(pieces: Uint8Array[]): Generator<Uint8Array> {
  for (const piece of pieces) yield piece.slice();
}
