/**
 * Micro-benchmarks of the shared buffer helper (`line_buffer.ts`): line framing,
 * splitting, UTF-8 validation and sanitising, each over about 1 MiB per iteration.
 *
 * `deno bench` reports time per iteration; every bench name says how many
 * bytes one iteration handles, and `deno task bench` turns that into MB/s
 * (10^6 bytes per second) with {@linkcode BYTES_PER_ITERATION}.
 *
 * @example
 * ```sh
 * deno bench bench/line_buffer_bench.ts
 * ```
 * @module
 */
import {
  isValidUtf8,
  LINE_TOO_LONG,
  LineFramer,
  MAX_BUFFER_SIZE,
  sanitize,
  splitMessage,
} from "../line_buffer.ts";

const TOTAL_BYTES = 1024 * 1024;
const CHUNK_BYTES = 16 * 1024;
// 16 000 is not a multiple of 256, so most chunks end in the middle of a line.
const ODD_CHUNK_BYTES = 16_000;
const LINE_COUNT = TOTAL_BYTES / MAX_BUFFER_SIZE;
// The seed text of the project is Chinese: 3 bytes a character in UTF-8.
const CHINESE = "网络聊天服务器把每一行消息转发给房间里的其他人，不拆开任何一个字。";

const encoder = new TextEncoder();

/** `count` bytes of text: `unit` repeated, cut on a character boundary. */
function textOfBytes(unit: string, count: number): string {
  let text = "";
  while (encoder.encode(text + unit).length <= count) text += unit;
  for (const char of unit) {
    if (encoder.encode(text + char).length > count) break;
    text += char;
  }
  return text;
}

/** 1 MiB of 256-byte messages (`unit` repeated to 255 bytes, and "\n"), as one buffer. */
function linesBuffer(unit: string): Uint8Array {
  const text = encoder.encode(textOfBytes(unit, MAX_BUFFER_SIZE - 1));
  const one = new Uint8Array(MAX_BUFFER_SIZE).fill(0x2e); // "." pads to 255 bytes
  one.set(text);
  one[MAX_BUFFER_SIZE - 1] = 0x0a;
  const buffer = new Uint8Array(TOTAL_BYTES);
  for (let offset = 0; offset < TOTAL_BYTES; offset += one.length) buffer.set(one, offset);
  return buffer;
}

/** `buffer` as views of `size` bytes, the way reads would hand it over. */
function chunksOf(buffer: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < buffer.length; offset += size) {
    chunks.push(buffer.subarray(offset, offset + size));
  }
  return chunks;
}

/** The framed lines of `buffer`, without their "\n". */
function linesOf(buffer: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  for (let offset = 0; offset < buffer.length; offset += MAX_BUFFER_SIZE) {
    lines.push(buffer.subarray(offset, offset + MAX_BUFFER_SIZE - 1));
  }
  return lines;
}

function frameAll(chunks: Uint8Array[]): number {
  const framer = new LineFramer();
  let frames = 0;
  for (const chunk of chunks) {
    for (const frame of framer.push(chunk)) if (frame !== LINE_TOO_LONG) frames++;
  }
  if (frames !== LINE_COUNT) throw new Error(`Framed ${frames} lines, expected ${LINE_COUNT}`);
  return frames;
}

const asciiBuffer = linesBuffer("hello from a netchat benchmark ");
const chineseBuffer = linesBuffer(CHINESE);
const alignedChunks = chunksOf(asciiBuffer, CHUNK_BYTES);
const oddChunks = chunksOf(asciiBuffer, ODD_CHUNK_BYTES);
const asciiLines = linesOf(asciiBuffer);
const chineseLines = linesOf(chineseBuffer);
// A user's long paste: 1 KiB lines of Chinese, each cut into messages of at most 255 bytes.
const longChineseLine = encoder.encode(textOfBytes(CHINESE, 1024));
const longChineseLines = Array.from({ length: 1024 }, () => longChineseLine);
// What sanitize() meets: decoded lines, with a terminal escape in every tenth one.
const textLines = asciiLines.map((line, i) => {
  const text = new TextDecoder().decode(line);
  return i % 10 === 0 ? `\x1b[31m${text.slice(5)}` : text;
});
const chineseTextLines = chineseLines.map((line) => new TextDecoder().decode(line));

/** How many bytes one iteration of each bench handles, by bench name. */
export const BYTES_PER_ITERATION: Record<string, number> = {};

// Each bench returns a count that is checked, so the optimiser cannot drop the work.
function bench(name: string, bytes: number, fn: () => number): void {
  BYTES_PER_ITERATION[name] = bytes;
  Deno.bench({
    name,
    group: name.split(":")[0],
    fn: () => {
      if (!(fn() > 0)) throw new Error(`Bench "${name}" did no work`);
    },
  });
}

bench(
  "LineFramer.push: 1 MiB of 256-byte lines, 16 KiB chunks",
  TOTAL_BYTES,
  () => frameAll(alignedChunks),
);
bench(
  "LineFramer.push: 1 MiB of 256-byte lines, 16000-byte chunks (lines split)",
  TOTAL_BYTES,
  () => frameAll(oddChunks),
);
// Echo's fast path asks where a read's whole lines end; short lines are what nc users type.
const shortLineChunks = chunksOf(
  encoder.encode("hello world\n".repeat(Math.floor(TOTAL_BYTES / 12))),
  CHUNK_BYTES,
);
function wholeLinesEndAll(chunks: Uint8Array[]): number {
  const framer = new LineFramer();
  let bytes = 0;
  for (const chunk of chunks) bytes += framer.wholeLinesEnd(chunk);
  return bytes;
}
bench(
  "LineFramer.wholeLinesEnd: 1 MiB of 256-byte lines, 16 KiB chunks",
  TOTAL_BYTES,
  () => wholeLinesEndAll(alignedChunks),
);
bench(
  "LineFramer.wholeLinesEnd: 1 MiB of 12-byte lines, 16 KiB chunks",
  Math.floor(TOTAL_BYTES / 12) * 12,
  () => wholeLinesEndAll(shortLineChunks),
);
bench(
  "splitMessage: 1 MiB of 1 KiB Chinese lines into 255-byte pieces",
  longChineseLines.reduce((sum, line) => sum + line.length, 0),
  () => {
    let pieces = 0;
    for (const line of longChineseLines) pieces += splitMessage(line).length;
    return pieces;
  },
);
bench("isValidUtf8: 1 MiB of 255-byte ASCII lines", asciiLines.length * 255, () => {
  let valid = 0;
  for (const line of asciiLines) if (isValidUtf8(line)) valid++;
  return valid === asciiLines.length ? valid : 0;
});
bench("isValidUtf8: 1 MiB of 255-byte Chinese lines", chineseLines.length * 255, () => {
  let valid = 0;
  for (const line of chineseLines) if (isValidUtf8(line)) valid++;
  return valid === chineseLines.length ? valid : 0;
});
bench(
  "sanitize: 1 MiB of ASCII lines, every tenth with an escape",
  TOTAL_BYTES - LINE_COUNT,
  () => {
    let length = 0;
    for (const text of textLines) length += sanitize(text).length;
    return length;
  },
);
bench("sanitize: 1 MiB of Chinese lines", chineseLines.length * 255, () => {
  let length = 0;
  for (const text of chineseTextLines) length += sanitize(text).length;
  return length;
});
