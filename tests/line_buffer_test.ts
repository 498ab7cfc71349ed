import assert from "node:assert/strict";
import { prng } from "./stress_scenarios.ts";
import {
  allocateBytes,
  decodeUtf8,
  encodeLine,
  type Frame,
  graphemeCutPoint,
  hasControlCharacters,
  isValidUtf8,
  LINE_TOO_LONG,
  LineFramer,
  MAX_BUFFER_SIZE,
  MAX_MESSAGE_BYTES,
  READ_BUFFER_SIZE,
  type Reader,
  readInputMessages,
  readLines,
  sanitize,
  splitMessage,
  toDisplayText,
  unpinned,
  utf8CutPoint,
  wholeLinesEnd,
  writeAll,
} from "../line_buffer.ts";

const encoder = new TextEncoder();
const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What a test expects a frame to be: the line's text or bytes, or the over-long marker. */
type Expected = string | Uint8Array | typeof LINE_TOO_LONG;

function bytesOf(part: string | Uint8Array): Uint8Array {
  return typeof part === "string" ? encoder.encode(part) : part;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function repeatByte(byte: number, count: number): Uint8Array {
  return new Uint8Array(count).fill(byte);
}

/** Cuts `bytes` at each of the ascending offsets in `points`. */
function splitAt(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  return chunks;
}

function oneByteAtATime(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

/**
 * Feeds `chunks` to `framer` the way a read loop does: each chunk is copied
 * into one reused buffer, the frames are copied right after `push()` (they are
 * views valid only until the next push), then the buffer is scribbled over, so
 * a framer that kept a view of an old chunk instead of copying it would fail.
 */
function frameAll(chunks: Uint8Array[], framer: LineFramer = new LineFramer()): Frame[] {
  const largest = chunks.reduce((max, chunk) => Math.max(max, chunk.length), 0);
  const scratch = new Uint8Array(largest);
  const frames: Frame[] = [];
  for (const chunk of chunks) {
    scratch.set(chunk);
    for (const frame of framer.push(scratch.subarray(0, chunk.length))) {
      frames.push(frame === LINE_TOO_LONG ? frame : frame.slice());
    }
    scratch.fill(0x23); // "#"
  }
  return frames;
}

function expectedFrames(expected: Expected[]): Frame[] {
  return expected.map((line) => line === LINE_TOO_LONG ? line : bytesOf(line));
}

/** A compact picture of frames for assertion messages. */
function show(frames: Frame[]): string {
  return frames.map((frame) =>
    frame === LINE_TOO_LONG ? "<too long>" : JSON.stringify(new TextDecoder().decode(frame))
  ).join(", ");
}

const X255 = "x".repeat(255);
const X256 = "x".repeat(256);
const X200 = "y".repeat(200);
// 85 three-byte characters: exactly the 255-byte limit.
const CHINESE_255 = "中".repeat(85);
const NI_HAO = "你好，世界";
// 1-, 2-, 3- and 4-byte characters in one line.
const MIXED = "Hi é 你好 😀 ok 𠀀 🇨🇳!";

interface FramingCase {
  name: string;
  chunks: (string | Uint8Array)[];
  expected: Expected[];
  /** What the framer still holds for an unfinished line at the end. */
  buffered?: number;
}

const FRAMING_CASES: FramingCase[] = [
  // A line split across two reads is reassembled.
  { name: "a partial line split across two reads", chunks: ["hel", "lo\n"], expected: ["hello"] },
  // The "\n" delimiter arrives alone, in the read after its line.
  {
    name: "the delimiter in a read of its own",
    chunks: ["hello", "\n", "world\n"],
    expected: [
      "hello",
      "world",
    ],
  },
  // "\r" ends one read and "\n" starts the next: still one "\r\n" line end.
  {
    name: "\\r and \\n in different reads",
    chunks: ["hi\r", "\nthere\r", "\n"],
    expected: [
      "hi",
      "there",
    ],
  },
  // One read holds many lines and the start of the next one.
  {
    name: "many lines in one read",
    chunks: ["a\nbb\nccc\ndd", "d\n"],
    expected: [
      "a",
      "bb",
      "ccc",
      "ddd",
    ],
  },
  // Empty lines, with and without "\r", are lines too.
  { name: "empty lines", chunks: ["\n\r\n\nz\n"], expected: ["", "", "", "z"] },
  // Only one "\r" right before "\n" is dropped; others are data.
  {
    name: "a \\r that is not right before \\n",
    chunks: ["a\rb\n", "c\r\r\n"],
    expected: [
      "a\rb",
      "c\r",
    ],
  },
  // 255 bytes is the limit and is allowed.
  { name: "exactly 255 bytes", chunks: [X255 + "\n"], expected: [X255] },
  // 256 bytes is one too many; the next line is kept.
  { name: "256 bytes is too long", chunks: [X256 + "\n", "ok\n"], expected: [LINE_TOO_LONG, "ok"] },
  // The "\r" of "\r\n" does not count toward the limit.
  { name: "255 bytes and \\r\\n", chunks: [X255 + "\r\n", "ok\r\n"], expected: [X255, "ok"] },
  // ...but 256 bytes is too long even with "\r\n".
  {
    name: "256 bytes and \\r\\n",
    chunks: [X256 + "\r\n", "ok\n"],
    expected: [LINE_TOO_LONG, "ok"],
  },
  // An over-long line over several reads is reported once, and the lines after it survive.
  {
    name: "an over-long line spanning several reads, then good lines",
    chunks: [X200, X200, X200, "\nnext\n", "last\n"],
    expected: [LINE_TOO_LONG, "next", "last"],
  },
  // Two over-long lines in a row are two reports.
  {
    name: "two over-long lines in a row",
    chunks: ["z".repeat(300) + "\n" + "w".repeat(257) + "\n" + "ok\n"],
    expected: [LINE_TOO_LONG, LINE_TOO_LONG, "ok"],
  },
  // Good, too long, good: only the middle one is lost.
  {
    name: "an over-long line between good lines",
    chunks: ["before\n" + X256 + "x\r\nafter\n"],
    expected: ["before", LINE_TOO_LONG, "after"],
  },
  // A line without its "\n" is not a message yet: it stays buffered.
  { name: "an unfinished last line", chunks: ["a\nbcd"], expected: ["a"], buffered: 3 },
  // A trailing "\r" without "\n" is not a line end.
  { name: "an unfinished line ending in \\r", chunks: ["a\r"], expected: [], buffered: 2 },
  // Chinese text, 3 bytes per character, whose bytes any read may split.
  {
    name: "Chinese text",
    chunks: [NI_HAO + "\n" + CHINESE_255 + "\r\n"],
    expected: [
      NI_HAO,
      CHINESE_255,
    ],
  },
  // 86 Chinese characters are 258 bytes: too long.
  {
    name: "a Chinese line one character too long",
    chunks: [CHINESE_255 + "中\n" + NI_HAO + "\n"],
    expected: [
      LINE_TOO_LONG,
      NI_HAO,
    ],
  },
  // Emoji and other 4-byte characters among 1-, 2- and 3-byte ones.
  { name: "a mixed line with 4-byte emoji", chunks: [MIXED + "\n"], expected: [MIXED] },
  // Bytes that are not UTF-8 are framed as they are; checking them is not the framer's job.
  {
    name: "bytes that are not UTF-8",
    chunks: [new Uint8Array([0xff, 0x80, 0x0a, 0xe4, 0xbd, 0x0d, 0x0a])],
    expected: [new Uint8Array([0xff, 0x80]), new Uint8Array([0xe4, 0xbd])],
  },
];

Deno.test("LineFramer frames each table case as given", async (t) => {
  for (const testCase of FRAMING_CASES) {
    await t.step(testCase.name, () => {
      const framer = new LineFramer();
      const frames = frameAll(testCase.chunks.map(bytesOf), framer);
      assert.deepEqual(frames, expectedFrames(testCase.expected), show(frames));
      assert.equal(framer.bufferedBytes, testCase.buffered ?? 0);
    });
  }
});

Deno.test("LineFramer gives the same frames at every split point and byte at a time", async (t) => {
  for (const testCase of FRAMING_CASES) {
    await t.step(testCase.name, () => {
      const input = concat(testCase.chunks.map(bytesOf));
      const whole = frameAll([input]);
      const asGiven = frameAll(testCase.chunks.map(bytesOf));
      assert.deepEqual(whole, asGiven, "one read and the given reads differ");
      for (let point = 0; point <= input.length; point++) {
        const framer = new LineFramer();
        const frames = frameAll(splitAt(input, [point]), framer);
        assert.deepEqual(frames, whole, `split at byte ${point}: ${show(frames)}`);
        assert.equal(framer.bufferedBytes, testCase.buffered ?? 0, `split at byte ${point}`);
      }
      const framer = new LineFramer();
      assert.deepEqual(frameAll(oneByteAtATime(input), framer), whole, "one byte at a time");
      assert.equal(framer.bufferedBytes, testCase.buffered ?? 0, "one byte at a time");
    });
  }
});

Deno.test("LineFramer gives the same frames for every pair of split points in short inputs", () => {
  const short = FRAMING_CASES.map((testCase) => concat(testCase.chunks.map(bytesOf)))
    .filter((input) => input.length <= 64);
  assert.ok(short.length >= 6, "the table should have several short cases");
  for (const input of short) {
    const whole = frameAll([input]);
    for (let first = 0; first <= input.length; first++) {
      for (let second = first; second <= input.length; second++) {
        const frames = frameAll(splitAt(input, [first, second]));
        assert.deepEqual(frames, whole, `split at ${first} and ${second}: ${show(frames)}`);
      }
    }
  }
});

Deno.test("LineFramer splits Chinese text at every byte position without changing it", () => {
  const lines = [NI_HAO, CHINESE_255, MIXED];
  assert.equal(encoder.encode(CHINESE_255).length, MAX_MESSAGE_BYTES);
  const input = encoder.encode(lines.map((line) => line + "\n").join(""));
  const splits = [oneByteAtATime(input)];
  for (let point = 0; point <= input.length; point++) splits.push(splitAt(input, [point]));
  for (const chunks of splits) {
    const frames = frameAll(chunks);
    const texts = frames.map((frame) => {
      assert.notEqual(frame, LINE_TOO_LONG);
      return fatalDecoder.decode(frame as Uint8Array);
    });
    assert.deepEqual(texts, lines, `chunks of ${chunks.map((chunk) => chunk.length)}`);
  }
});

Deno.test("LineFramer keeps a finished line intact while the same read starts the next line", () => {
  const framer = new LineFramer();
  assert.deepEqual(framer.push(encoder.encode("ab")), []);
  // "abc" is put together in the framer's buffer, and "xy" must not overwrite it.
  const frames = framer.push(encoder.encode("c\nxy"));
  assert.deepEqual(frames, [encoder.encode("abc")]);
  assert.equal(framer.bufferedBytes, 2);
  // The same again with the buffers swapped the other way.
  const next = framer.push(encoder.encode("z\nuv"));
  assert.deepEqual(next, [encoder.encode("xyz")]);
  assert.equal(framer.bufferedBytes, 2);
});

Deno.test("LineFramer reports the bytes it holds for an unfinished line", () => {
  const framer = new LineFramer();
  assert.equal(framer.bufferedBytes, 0);
  framer.push(encoder.encode("你好"));
  assert.equal(framer.bufferedBytes, 6);
  framer.push(encoder.encode("x".repeat(249)));
  assert.equal(framer.bufferedBytes, 255);
  // Room for a "\r" after a full-length line.
  framer.push(encoder.encode("\r"));
  assert.equal(framer.bufferedBytes, MAX_BUFFER_SIZE);
  // One more byte: the line is over the limit and nothing more is buffered.
  framer.push(encoder.encode("x"));
  assert.equal(framer.bufferedBytes, 0);
  assert.deepEqual(framer.push(encoder.encode("more\nok\n")), [
    LINE_TOO_LONG,
    encoder.encode("ok"),
  ]);
  assert.equal(framer.bufferedBytes, 0);
});

Deno.test("LineFramer never buffers more than 256 bytes of a 1 MB line without a newline", async (t) => {
  const megabyte = repeatByte(0x61, 1024 * 1024);
  for (const size of [1, 7, 255, 256, 257, 4096, READ_BUFFER_SIZE, megabyte.length]) {
    await t.step(`in reads of ${size} bytes`, () => {
      const framer = new LineFramer();
      let most = 0;
      for (let start = 0; start < megabyte.length; start += size) {
        const frames = framer.push(megabyte.subarray(start, start + size));
        assert.equal(frames.length, 0, `a frame before the newline at byte ${start}`);
        most = Math.max(most, framer.bufferedBytes);
      }
      assert.ok(most <= MAX_BUFFER_SIZE, `buffered ${most} bytes`);
      assert.deepEqual(frameAll([encoder.encode("\nafter\n")], framer), [
        LINE_TOO_LONG,
        encoder.encode("after"),
      ]);
      assert.equal(framer.bufferedBytes, 0);
    });
  }
});

Deno.test("LineFramer takes its limit from the constructor", () => {
  const framer = new LineFramer(4);
  const frames = frameAll([encoder.encode("abcd\nabcde\nab\r\nabcd\r\n你好\n")], framer);
  assert.deepEqual(frames, [
    encoder.encode("abcd"),
    LINE_TOO_LONG,
    encoder.encode("ab"),
    encoder.encode("abcd"),
    LINE_TOO_LONG,
  ]);
});

/** A fake `read()` source that returns exactly the chosen chunks, then `null`. */
class ChunkReader implements Reader {
  #chunks: Uint8Array[];
  reads = 0;

  constructor(chunks: Uint8Array[]) {
    this.#chunks = [...chunks];
  }

  read(buffer: Uint8Array): Promise<number | null> {
    this.reads++;
    const chunk = this.#chunks.shift();
    if (chunk === undefined) return Promise.resolve(null);
    assert.ok(chunk.length <= buffer.length, "the test chunk does not fit the read buffer");
    buffer.set(chunk);
    return Promise.resolve(chunk.length);
  }
}

async function collect(reader: Reader, maxLineBytes?: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  for await (const frame of readLines(reader, maxLineBytes)) frames.push(frame);
  return frames;
}

Deno.test("readLines() reassembles lines across reads and keeps the lines after an over-long one", async () => {
  const chunks = ["fir", "st\nsec", "ond\r", "\n", X256, "\nthird\n"].map(bytesOf);
  const reader = new ChunkReader(chunks);
  assert.deepEqual(
    await collect(reader),
    expectedFrames(["first", "second", LINE_TOO_LONG, "third"]),
  );
  assert.equal(reader.reads, chunks.length + 1, "it reads until null");
});

Deno.test("readLines() yields copies that stay valid after later reads", async () => {
  // Every read lands at the start of the same read buffer; views would all be overwritten.
  const frames = await collect(new ChunkReader(["first\n", "second\n", "3rd\n"].map(bytesOf)));
  assert.deepEqual(frames, expectedFrames(["first", "second", "3rd"]));
  const [first, second] = frames as Uint8Array[];
  assert.notEqual(first.buffer, second.buffer);
});

Deno.test("readLines() drops an unfinished last line without \\n", async () => {
  assert.deepEqual(
    await collect(new ChunkReader(["one\ntw", "o"].map(bytesOf))),
    expectedFrames(["one"]),
  );
  assert.deepEqual(await collect(new ChunkReader([encoder.encode("no newline")])), []);
  assert.deepEqual(await collect(new ChunkReader([])), []);
});

Deno.test("readLines() frames many lines from one read", async () => {
  const lines = Array.from({ length: 500 }, (_, i) => `line ${i} 第${i}行`);
  const input = encoder.encode(lines.map((line) => line + "\n").join(""));
  assert.ok(input.length <= READ_BUFFER_SIZE);
  const frames = await collect(new ChunkReader([input]));
  assert.deepEqual(frames.map((frame) => fatalDecoder.decode(frame as Uint8Array)), lines);
});

Deno.test("readLines() takes its limit as an argument", async () => {
  const frames = await collect(new ChunkReader([encoder.encode("abc\nabcd\nab\n")]), 3);
  assert.deepEqual(frames, expectedFrames(["abc", LINE_TOO_LONG, "ab"]));
});

Deno.test("readLines() passes a read error on instead of swallowing it", async () => {
  let calls = 0;
  const reader: Reader = {
    read(buffer) {
      calls++;
      if (calls > 1) return Promise.reject(new Deno.errors.ConnectionReset("reset by peer"));
      buffer.set(encoder.encode("ok\n"));
      return Promise.resolve(3);
    },
  };
  const frames: Frame[] = [];
  await assert.rejects(async () => {
    for await (const frame of readLines(reader)) frames.push(frame);
  }, Deno.errors.ConnectionReset);
  assert.deepEqual(frames, expectedFrames(["ok"]));
});

Deno.test("readLines() splits Chinese text at every byte position without changing it", async () => {
  const lines = [NI_HAO, CHINESE_255, MIXED];
  const input = encoder.encode(lines.map((line) => line + "\r\n").join(""));
  const splits = [oneByteAtATime(input)];
  for (let point = 0; point <= input.length; point++) splits.push(splitAt(input, [point]));
  for (const chunks of splits) {
    const frames = await collect(new ChunkReader(chunks));
    const texts = frames.map((frame) => fatalDecoder.decode(frame as Uint8Array));
    assert.deepEqual(texts, lines, `chunks of ${chunks.map((chunk) => chunk.length)}`);
  }
});

async function collectMessages(reader: Reader): Promise<string[]> {
  const messages: Uint8Array[] = [];
  for await (const message of readInputMessages(reader)) messages.push(message);
  // Decoded only at the end: a message that was a view of the read buffer would be overwritten.
  return messages.map((message) => fatalDecoder.decode(message));
}

Deno.test("readInputMessages() sends one message per line and a last line without \\n", async () => {
  const chunks = ["hello\r\nwor", "ld\n\n你", "好"].map(bytesOf);
  assert.deepEqual(await collectMessages(new ChunkReader(chunks)), ["hello", "world", "", "你好"]);
  assert.deepEqual(await collectMessages(new ChunkReader([])), []);
});

Deno.test("readInputMessages() cuts long lines at character boundaries at every split point", async () => {
  // 301 bytes: 255 is inside a character, so the first piece stops at 253.
  const hundred = "a" + "中".repeat(100);
  const input = encoder.encode(`${NI_HAO}\n${hundred}\n${MIXED}\n${"a".repeat(600)}\nend`);
  const expected = [
    NI_HAO,
    "a" + "中".repeat(84),
    "中".repeat(16),
    MIXED,
    "a".repeat(255),
    "a".repeat(255),
    "a".repeat(90),
    "end",
  ];
  const splits = [oneByteAtATime(input)];
  for (let point = 0; point <= input.length; point++) splits.push(splitAt(input, [point]));
  for (const chunks of splits) {
    const messages = await collectMessages(new ChunkReader(chunks));
    assert.deepEqual(messages, expected, `chunks of ${chunks.map((chunk) => chunk.length)}`);
  }
});

Deno.test("readInputMessages() sends a long line in pieces before its end arrives", async () => {
  const reader = new ChunkReader(Array.from({ length: 64 }, () => repeatByte(0x61, 1024)));
  let readsAtFirst = -1;
  let count = 0;
  for await (const message of readInputMessages(reader)) {
    if (readsAtFirst === -1) readsAtFirst = reader.reads;
    assert.ok(message.length <= MAX_MESSAGE_BYTES && message.length > 0);
    count++;
  }
  assert.equal(readsAtFirst, 1, "the first piece waits for no more than one read");
  assert.equal(count, Math.ceil((64 * 1024) / MAX_MESSAGE_BYTES));
});

/** A tiny seeded xorshift32, so the "random" inputs are the same on every run. */
function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

// One character of each UTF-8 length, and a few more of the awkward ones.
const CHARACTERS = ["a", " ", "~", "é", "ñ", "\u07ff", "中", "，", "\u0800", "\uffff", "😀", "𠀀"];

/** A line of exactly `size` bytes of random 1- to 4-byte characters. */
function randomLine(next: () => number, size: number): string {
  let line = "";
  let bytes = 0;
  while (bytes < size) {
    const character = CHARACTERS[next() % CHARACTERS.length];
    const length = encoder.encode(character).length;
    if (bytes + length > size) {
      line += "z".repeat(size - bytes);
      break;
    }
    line += character;
    bytes += length;
  }
  return line;
}

Deno.test("splitMessage() never splits a character and keeps every piece within 255 bytes", () => {
  const next = xorshift32(0x5eed);
  for (let size = 0; size <= 1000; size++) {
    const text = randomLine(next, size);
    const line = encoder.encode(text);
    assert.equal(line.length, size);
    const pieces = splitMessage(line);
    const decoded = pieces.map((piece) => fatalDecoder.decode(piece));
    assert.equal(decoded.join(""), text, `line of ${size} bytes`);
    assert.deepEqual(concat(pieces), line);
    for (const [i, piece] of pieces.entries()) {
      assert.ok(piece.length <= MAX_MESSAGE_BYTES, `piece of ${piece.length} bytes`);
      if (i < pieces.length - 1) {
        // A piece is only cut short to keep a character whole (at most 3 bytes short).
        assert.ok(piece.length >= MAX_MESSAGE_BYTES - 3, `piece ${i} is ${piece.length} bytes`);
      } else {
        assert.ok(piece.length > 0 || size === 0, "an empty last piece");
      }
    }
  }
});

Deno.test("splitMessage() gives one empty piece for an empty line", () => {
  assert.deepEqual(splitMessage(new Uint8Array(0)), [new Uint8Array(0)]);
});

Deno.test("splitMessage() cuts 85 Chinese characters and one more into 255 bytes and 3", () => {
  const pieces = splitMessage(encoder.encode(CHINESE_255 + "国"));
  assert.deepEqual(pieces.map((piece) => fatalDecoder.decode(piece)), [CHINESE_255, "国"]);
});

Deno.test("splitMessage() takes its limit as an argument", () => {
  const pieces = splitMessage(encoder.encode("ab你好😀c"), 4);
  assert.deepEqual(pieces.map((piece) => fatalDecoder.decode(piece)), [
    "ab",
    "你",
    "好",
    "😀",
    "c",
  ]);
});

Deno.test("utf8CutPoint() steps back to the start of a character that straddles the limit", async (t) => {
  const cases: { name: string; bytes: Uint8Array; limit: number; cut: number }[] = [
    // Short enough: the whole thing.
    { name: "shorter than the limit", bytes: encoder.encode("你好"), limit: 255, cut: 6 },
    { name: "exactly the limit", bytes: encoder.encode(CHINESE_255), limit: 255, cut: 255 },
    // The limit falls between two characters.
    {
      name: "on a character boundary",
      bytes: encoder.encode(CHINESE_255 + "a"),
      limit: 255,
      cut: 255,
    },
    // A 2-byte character whose second byte would be cut off.
    {
      name: "inside a 2-byte character",
      bytes: encoder.encode("a".repeat(254) + "é"),
      limit: 255,
      cut: 254,
    },
    // A 3-byte character starting 1 or 2 bytes before the limit.
    {
      name: "after 1 byte of 3",
      bytes: encoder.encode("a".repeat(254) + "中"),
      limit: 255,
      cut: 254,
    },
    {
      name: "after 2 bytes of 3",
      bytes: encoder.encode("a".repeat(253) + "中"),
      limit: 255,
      cut: 253,
    },
    // A 4-byte character starting 1, 2 or 3 bytes before the limit.
    {
      name: "after 1 byte of 4",
      bytes: encoder.encode("a".repeat(254) + "😀"),
      limit: 255,
      cut: 254,
    },
    {
      name: "after 2 bytes of 4",
      bytes: encoder.encode("a".repeat(253) + "😀"),
      limit: 255,
      cut: 253,
    },
    {
      name: "after 3 bytes of 4",
      bytes: encoder.encode("a".repeat(252) + "😀"),
      limit: 255,
      cut: 252,
    },
    // A 4-byte character that ends exactly at the limit.
    {
      name: "right after a 4-byte character",
      bytes: encoder.encode("a".repeat(251) + "😀b"),
      limit: 255,
      cut: 255,
    },
    // Not UTF-8: more continuation bytes than any character has, so cut at the limit.
    { name: "a run of continuation bytes", bytes: repeatByte(0x80, 300), limit: 255, cut: 255 },
  ];
  for (const { name, bytes, limit, cut } of cases) {
    await t.step(name, () => assert.equal(utf8CutPoint(bytes, limit), cut));
  }
});

function decoderAccepts(bytes: Uint8Array): boolean {
  try {
    fatalDecoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const UTF8_CASES: { name: string; bytes: number[]; valid: boolean }[] = [
  { name: "empty", bytes: [], valid: true },
  { name: "ASCII", bytes: [0x68, 0x69, 0x0a], valid: true },
  { name: "NUL and DEL", bytes: [0x00, 0x7f], valid: true },
  { name: "你好", bytes: [0xe4, 0xbd, 0xa0, 0xe5, 0xa5, 0xbd], valid: true },
  { name: "😀", bytes: [0xf0, 0x9f, 0x98, 0x80], valid: true },
  { name: "smallest 2-byte U+0080", bytes: [0xc2, 0x80], valid: true },
  { name: "largest 2-byte U+07FF", bytes: [0xdf, 0xbf], valid: true },
  { name: "smallest 3-byte U+0800", bytes: [0xe0, 0xa0, 0x80], valid: true },
  { name: "last before the surrogates U+D7FF", bytes: [0xed, 0x9f, 0xbf], valid: true },
  { name: "first after the surrogates U+E000", bytes: [0xee, 0x80, 0x80], valid: true },
  { name: "U+FFFF", bytes: [0xef, 0xbf, 0xbf], valid: true },
  { name: "BOM U+FEFF", bytes: [0xef, 0xbb, 0xbf], valid: true },
  { name: "smallest 4-byte U+10000", bytes: [0xf0, 0x90, 0x80, 0x80], valid: true },
  { name: "largest U+10FFFF", bytes: [0xf4, 0x8f, 0xbf, 0xbf], valid: true },
  { name: "overlong NUL C0 80", bytes: [0xc0, 0x80], valid: false },
  { name: "overlong C1 BF", bytes: [0xc1, 0xbf], valid: false },
  { name: "overlong E0 80 80", bytes: [0xe0, 0x80, 0x80], valid: false },
  { name: "overlong E0 9F BF", bytes: [0xe0, 0x9f, 0xbf], valid: false },
  { name: "overlong F0 80 80 80", bytes: [0xf0, 0x80, 0x80, 0x80], valid: false },
  { name: "overlong F0 8F BF BF", bytes: [0xf0, 0x8f, 0xbf, 0xbf], valid: false },
  { name: "high surrogate ED A0 80", bytes: [0xed, 0xa0, 0x80], valid: false },
  { name: "low surrogate ED BF BF", bytes: [0xed, 0xbf, 0xbf], valid: false },
  { name: "surrogate pair as CESU-8", bytes: [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], valid: false },
  { name: "above U+10FFFF F4 90 80 80", bytes: [0xf4, 0x90, 0x80, 0x80], valid: false },
  { name: "F5 lead byte", bytes: [0xf5, 0x80, 0x80, 0x80], valid: false },
  { name: "F8 lead byte", bytes: [0xf8, 0x88, 0x80, 0x80, 0x80], valid: false },
  { name: "FE", bytes: [0xfe], valid: false },
  { name: "FF", bytes: [0xff], valid: false },
  { name: "lone continuation byte 80", bytes: [0x80], valid: false },
  { name: "lone continuation byte BF after ASCII", bytes: [0x61, 0xbf], valid: false },
  { name: "continuation after a whole character", bytes: [0xc3, 0xa9, 0x80], valid: false },
  { name: "truncated 2-byte at the end", bytes: [0x61, 0xc3], valid: false },
  { name: "truncated 3-byte at the end", bytes: [0xe4, 0xbd], valid: false },
  { name: "truncated 4-byte at the end", bytes: [0xf0, 0x9f, 0x98], valid: false },
  { name: "lead byte alone at the end", bytes: [0x61, 0x62, 0xf0], valid: false },
  { name: "truncated 3-byte before ASCII", bytes: [0xe4, 0xbd, 0x61], valid: false },
  {
    name: "ASCII in place of the last continuation byte",
    bytes: [0xf0, 0x9f, 0x98, 0x41],
    valid: false,
  },
  { name: "two lead bytes", bytes: [0xc3, 0xc3, 0xa9], valid: false },
];

Deno.test("isValidUtf8() agrees with a fatal TextDecoder on tricky cases", async (t) => {
  for (const { name, bytes, valid } of UTF8_CASES) {
    await t.step(name, () => {
      const array = new Uint8Array(bytes);
      assert.equal(decoderAccepts(array), valid, "the table is wrong");
      assert.equal(isValidUtf8(array), valid);
    });
  }
});

Deno.test("isValidUtf8() agrees with a fatal TextDecoder on seeded random bytes", () => {
  const next = xorshift32(20240611);
  // Bytes near every boundary the checker tests, so random arrays are often almost valid.
  const interesting = [
    0x00,
    0x41,
    0x7f,
    0x80,
    0x8f,
    0x90,
    0x9f,
    0xa0,
    0xbf,
    0xc0,
    0xc1,
    0xc2,
    0xdf,
    0xe0,
    0xe1,
    0xec,
    0xed,
    0xee,
    0xef,
    0xf0,
    0xf1,
    0xf3,
    0xf4,
    0xf5,
    0xf7,
    0xf8,
    0xfe,
    0xff,
  ];
  let valid = 0;
  let invalid = 0;
  for (let i = 0; i < 6000; i++) {
    const length = next() % 12;
    const array = new Uint8Array(length);
    for (let k = 0; k < length; k++) {
      // Mostly continuation bytes after lead bytes, to build plausible sequences.
      const kind = next() % 4;
      array[k] = kind === 0
        ? next() & 0xff
        : kind === 1
        ? 0x80 | (next() & 0x3f)
        : interesting[next() % interesting.length];
    }
    if (i % 3 === 0) {
      // A valid line with one byte changed.
      const line = encoder.encode(randomLine(next, 4 + next() % 12));
      line[next() % line.length] = next() & 0xff;
      const expected = decoderAccepts(line);
      assert.equal(isValidUtf8(line), expected, `bytes ${Array.from(line)}`);
      expected ? valid++ : invalid++;
    }
    const expected = decoderAccepts(array);
    assert.equal(isValidUtf8(array), expected, `bytes ${Array.from(array)}`);
    expected ? valid++ : invalid++;
  }
  // Both answers must come up often, or the comparison proves little.
  assert.ok(valid > 500, `${valid} valid`);
  assert.ok(invalid > 500, `${invalid} invalid`);
});

Deno.test("isValidUtf8() accepts random lines of 1- to 4-byte characters", () => {
  const next = xorshift32(7);
  for (let size = 0; size <= 300; size++) {
    assert.ok(isValidUtf8(encoder.encode(randomLine(next, size))));
  }
});

const SANITIZE_CASES: { name: string; input: string; output: string }[] = [
  { name: "plain ASCII is kept", input: "hello, world", output: "hello, world" },
  { name: "Chinese is kept", input: NI_HAO, output: NI_HAO },
  { name: "emoji and 4-byte characters are kept", input: MIXED, output: MIXED },
  { name: "tab is kept", input: "a\tb", output: "a\tb" },
  { name: "space, tilde and no-break space are kept", input: " ~\u00a0", output: " ~\u00a0" },
  {
    name: "zero-width and other format characters are kept",
    input: "a\u200bb",
    output: "a\u200bb",
  },
  { name: "NUL, BEL and backspace are removed", input: "\x00a\x07b\x08", output: "ab" },
  { name: "newline and carriage return are removed", input: "a\nb\rc", output: "abc" },
  { name: "the last C0 control U+001F is removed", input: "a\x1fb", output: "ab" },
  { name: "DEL is removed", input: "a\x7fb", output: "ab" },
  // Changed: U+009F is APC, which opens a control string (ECMA-48 §5.6) that
  // runs to its ST or, with none, to the end of the text.
  { name: "the first C1 control is removed", input: "\u0080ab", output: "ab" },
  { name: "the last C1 control, APC, takes its string along", input: "a\u009fb", output: "a" },
  // Changed: a sequence goes whole, not only its ESC or C1 control.
  { name: "a colour sequence is removed whole", input: "\x1b[31mred\x1b[0m", output: "red" },
  { name: "a one-byte CSI is removed whole", input: "\u009b2Jclear", output: "clear" },
  { name: "an OSC title sequence is removed whole", input: "\x1b]0;title\x07", output: "" },
  { name: "an 8-bit OSC is removed whole", input: "\u009d0;t\u009c", output: "" },
  { name: "only controls leave nothing", input: "\x1b\r\n\x00", output: "" },
];

/** Every ECMA-48 form, 7-bit and 8-bit, with text around it that must stay. */
const ESCAPE_SEQUENCE_CASES: { name: string; input: string; output: string }[] = [
  // A raw client's arrow keys and colour codes.
  { name: "arrow keys typed into a raw client", input: "\x1b[A\x1b[Dagain", output: "again" },
  { name: "SGR colour codes", input: "<bob> \x1b[31mred\x1b[0m", output: "<bob> red" },
  // §5.4 control sequences: CSI, parameter bytes, intermediate bytes, final byte.
  { name: "CSI with many parameters", input: "\x1b[38;5;196mx\x1b[m", output: "x" },
  { name: "CSI with private parameters", input: "\x1b[?25l\x1b[?1049hx", output: "x" },
  { name: "CSI with an intermediate byte", input: "\x1b[2 qx", output: "x" },
  { name: "CSI whose final byte is ~ (0x7E)", input: "\x1b[3~x", output: "x" },
  { name: "CSI whose final byte is @ (0x40)", input: "\x1b[4@x", output: "x" },
  { name: "8-bit CSI", input: "\u009b31mred\u009b0m", output: "red" },
  { name: "CSI cut off before its final byte", input: "abc\x1b[12;3", output: "abc" },
  { name: "CSI with a parameter after an intermediate", input: "\x1b[1 2mx", output: "x" },
  { name: "CSI ended by a character outside it", input: "\x1b[31;你好", output: "你好" },
  // §5.6 control strings.
  { name: "OSC ended by BEL", input: "\x1b]0;title\x07after", output: "after" },
  { name: "OSC ended by ESC \\", input: "\x1b]2;title\x1b\\after", output: "after" },
  {
    name: "an OSC 8 hyperlink keeps its text only",
    input: "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    output: "click",
  },
  { name: "8-bit OSC ended by 8-bit ST", input: "\u009d0;t\u009cafter", output: "after" },
  { name: "8-bit OSC ended by BEL", input: "\u009d0;t\x07after", output: "after" },
  {
    name: "OSC without a terminator runs to the end",
    input: "before\x1b]0;title",
    output: "before",
  },
  { name: "OSC cut short by another sequence", input: "\x1b]0;t\x1b[31mred", output: "red" },
  { name: "OSC holding Chinese", input: "\x1b]0;你好\x07世界", output: "世界" },
  { name: "DCS ended by ST", input: "\x1bP+q544e\x1b\\after", output: "after" },
  { name: "DCS is not ended by BEL", input: "\x1bPa\x07b\x1b\\c", output: "c" },
  { name: "DCS without ST runs to the end", input: "a\x1bPq#0;2;0;0;0", output: "a" },
  { name: "8-bit DCS", input: "\u0090q\u009cafter", output: "after" },
  { name: "SOS", input: "\x1bXhidden\x1b\\shown", output: "shown" },
  { name: "8-bit SOS", input: "\u0098hidden\u009cshown", output: "shown" },
  { name: "PM", input: "\x1b^hidden\x1b\\shown", output: "shown" },
  { name: "8-bit PM", input: "\u009ehidden\u009cshown", output: "shown" },
  { name: "APC", input: "\x1b_hidden\x1b\\shown", output: "shown" },
  { name: "8-bit APC", input: "\u009fhidden\u009cshown", output: "shown" },
  { name: "an ST on its own", input: "a\x1b\\b\u009cc", output: "abc" },
  // §8.3.125-126 SS2 and SS3 take the graphic character after them.
  { name: "arrow keys in application mode (SS3)", input: "\x1bOA\x1bOBok", output: "ok" },
  { name: "SS2 and its character", input: "\x1bNxok", output: "ok" },
  { name: "8-bit SS2 and SS3", input: "\u008ex\u008fAok", output: "ok" },
  { name: "SS3 at the end of the text", input: "ok\x1bO", output: "ok" },
  { name: "SS3 does not take a Chinese character", input: "\x1bO你好", output: "你好" },
  { name: "SS3 does not take the ESC after it", input: "\x1bO\x1b[31mx", output: "x" },
  // Other escape sequences: ESC, intermediates 0x20-0x2F, final 0x30-0x7E.
  { name: "save and restore the cursor", input: "\x1b7saved\x1b8", output: "saved" },
  { name: "a character set designation", input: "\x1b(Bx\x1b)0y", output: "xy" },
  { name: "a full reset", input: "\x1bcok", output: "ok" },
  { name: "ESC with two intermediates", input: "\x1b$(Bx", output: "x" },
  { name: "ESC with a final ~ (0x7E)", input: "\x1b~x", output: "x" },
  { name: "ESC at the end of the text", input: "x\x1b", output: "x" },
  { name: "ESC with intermediates cut off", input: "x\x1b(", output: "x" },
  { name: "ESC then a sequence", input: "\x1b\x1b[31mz", output: "z" },
  { name: "ESC then DEL", input: "a\x1b\x7fb", output: "ab" },
  // Unicode's own line breaks would forge lines for whoever splits on them.
  {
    name: "a LINE SEPARATOR before a forged notice",
    input: "hi\u2028* alice left (quit)",
    output: "hi* alice left (quit)",
  },
  { name: "a PARAGRAPH SEPARATOR", input: "a\u2029b", output: "ab" },
  { name: "NEL", input: "a\u0085b", output: "ab" },
  // What is text stays, around and between sequences.
  {
    name: "Chinese, emoji and combining marks around sequences",
    input: "你\x1b[1m好😀\x1b[0m👨‍👩‍👧e\u0301\x1b]0;t\x07",
    output: "你好😀👨‍👩‍👧e\u0301",
  },
  { name: "a tab inside sequences", input: "a\t\x1b[Kb", output: "a\tb" },
];

Deno.test("sanitize() removes every ECMA-48 escape sequence whole, 7-bit and 8-bit", async (t) => {
  for (const { name, input, output } of ESCAPE_SEQUENCE_CASES) {
    await t.step(name, () => {
      assert.equal(sanitize(input), output);
      assert.equal(hasControlCharacters(input), true);
      assert.equal(hasControlCharacters(output), false);
    });
  }
});

Deno.test("sanitize() removes control characters and keeps all other text", async (t) => {
  for (const { name, input, output } of SANITIZE_CASES) {
    await t.step(name, () => assert.equal(sanitize(input), output));
  }
});

Deno.test("sanitize() removes exactly C0 but tab, DEL, C1, U+2028, U+2029 and bidi controls among 1024 code points and General Punctuation", () => {
  const codes = [...Array(1024).keys(), ...Array.from({ length: 0x70 }, (_, i) => 0x2000 + i)];
  for (const code of codes) {
    const character = String.fromCodePoint(code);
    const control = (code < 0x20 && code !== 0x09) || (code >= 0x7f && code <= 0x9f) ||
      code === 0x2028 || code === 0x2029 || (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069);
    // Changed: nothing after the character, as ESC, CSI, OSC... now take what follows them.
    const text = `<${character}`;
    assert.equal(sanitize(text), control ? "<" : text, `U+${code.toString(16)}`);
    assert.equal(hasControlCharacters(text), control, `U+${code.toString(16)}`);
  }
});

/** Text of random pieces: sequence openers, their bytes, terminators and plain text. */
function randomEscapeText(next: () => number, pieces: number): string {
  const parts = [
    "\x1b",
    "[",
    "]",
    "P",
    "X",
    "^",
    "_",
    "N",
    "O",
    "\\",
    "\x07",
    "\u009b",
    "\u009c",
    "\u009d",
    "\u0090",
    "\u008f",
    "\u0085",
    "\u2028",
    "\u2029",
    "\x00",
    "\r",
    "\n",
    "\x7f",
    "\t",
    " ",
    "(",
    "?",
    ";",
    "0",
    "31",
    "m",
    "A",
    "~",
    "你",
    "😀",
    "e\u0301",
  ];
  let text = "";
  for (let i = 0; i < pieces; i++) text += parts[next() % parts.length];
  return text;
}

Deno.test("sanitize() leaves no control character in random text and changes nothing twice", () => {
  const next = xorshift32(2028);
  for (let i = 0; i < 20_000; i++) {
    const input = randomEscapeText(next, 1 + next() % 24);
    const output = sanitize(input);
    const shown = JSON.stringify(input);
    assert.equal(hasControlCharacters(output), false, shown);
    assert.equal(sanitize(output), output, shown);
    assert.equal(hasControlCharacters(input), output !== input, shown);
    // Removal never cuts a surrogate pair in half.
    assert.ok(
      !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(output),
      shown,
    );
  }
});

Deno.test("sanitize() returns the text itself when there is nothing to remove", () => {
  for (const text of ["", "hello", NI_HAO, MIXED, "a\tb", "[31m ]0;title"]) {
    assert.equal(sanitize(text), text);
  }
});

Deno.test("hasControlCharacters() is true exactly when sanitize() would change the text", async (t) => {
  for (const { name, input, output } of [...SANITIZE_CASES, ...ESCAPE_SEQUENCE_CASES]) {
    await t.step(name, () => {
      // Asked twice: a stateful (global) pattern would answer differently the second time.
      assert.equal(hasControlCharacters(input), input !== output);
      assert.equal(hasControlCharacters(input), input !== output);
    });
  }
});

Deno.test("toDisplayText() decodes leniently and removes escape sequences and control characters", async (t) => {
  const cases: { name: string; bytes: Uint8Array; text: string }[] = [
    { name: "Chinese", bytes: encoder.encode(NI_HAO), text: NI_HAO },
    { name: "tab and emoji", bytes: encoder.encode("a\t😀"), text: "a\t😀" },
    // Changed: the whole sequence goes, not only its ESC.
    { name: "an ESC sequence", bytes: encoder.encode("\x1b[31mred"), text: "red" },
    // U+009B encoded as UTF-8 (C2 9B) is a CSI to a UTF-8 terminal; CSI A moves
    // the cursor up, so (changed) the A goes with it.
    { name: "an encoded C1 CSI", bytes: new Uint8Array([0xc2, 0x9b, 0x41]), text: "" },
    {
      name: "an encoded C1 CSI and text",
      bytes: new Uint8Array([0xc2, 0x9b, 0x33, 0x31, 0x6d, 0x41]),
      text: "A",
    },
    { name: "arrow keys", bytes: encoder.encode("\x1b[A\x1bOBagain"), text: "again" },
    { name: "an OSC title", bytes: encoder.encode("\x1b]0;pwned\x07你好"), text: "你好" },
    { name: "a LINE SEPARATOR", bytes: encoder.encode("a\u2028b\u2029c"), text: "abc" },
    // A raw 9B byte is not UTF-8 and shows as U+FFFD, which is harmless.
    { name: "a raw 9B byte", bytes: new Uint8Array([0x9b, 0x41]), text: "\ufffdA" },
    { name: "an invalid byte", bytes: new Uint8Array([0x61, 0xff, 0x62]), text: "a\ufffdb" },
    { name: "a truncated character", bytes: new Uint8Array([0x61, 0xe4, 0xbd]), text: "a\ufffd" },
    { name: "a surrogate", bytes: new Uint8Array([0xed, 0xa0, 0x80]), text: "\ufffd\ufffd\ufffd" },
    { name: "newline and NUL", bytes: new Uint8Array([0x61, 0x0a, 0x00, 0x62]), text: "ab" },
  ];
  for (const { name, bytes, text } of cases) {
    await t.step(name, () => assert.equal(toDisplayText(bytes), text));
  }
});

Deno.test("encodeLine() adds \\n and decodeUtf8() reverses the encoding", () => {
  const line = encodeLine(NI_HAO);
  assert.deepEqual(
    line,
    new Uint8Array([
      0xe4,
      0xbd,
      0xa0,
      0xe5,
      0xa5,
      0xbd,
      0xef,
      0xbc,
      0x8c,
      0xe4,
      0xb8,
      0x96,
      0xe7,
      0x95,
      0x8c,
      0x0a,
    ]),
  );
  assert.equal(decodeUtf8(line.subarray(0, line.length - 1)), NI_HAO);
  assert.deepEqual(encodeLine(""), new Uint8Array([0x0a]));
});

/** A fake writer that takes at most `most` bytes per call, recording what it got. */
function slowWriter(most: number) {
  const calls: Uint8Array[] = [];
  return {
    calls,
    write(bytes: Uint8Array): Promise<number> {
      const taken = bytes.slice(0, most);
      calls.push(taken);
      return Promise.resolve(taken.length);
    },
  };
}

Deno.test("writeAll() writes everything in order to a writer that takes 3 bytes at a time", async () => {
  const bytes = encoder.encode(`${NI_HAO} hello ${MIXED}\n`);
  const writer = slowWriter(3);
  await writeAll(writer, bytes);
  assert.deepEqual(concat(writer.calls), bytes);
  assert.ok(writer.calls.every((call) => call.length === 3 || call === writer.calls.at(-1)));
  assert.equal(writer.calls.length, Math.ceil(bytes.length / 3));
});

Deno.test("writeAll() writes everything to a writer that takes 1 byte at a time", async () => {
  const bytes = encoder.encode(CHINESE_255 + "\n");
  const writer = slowWriter(1);
  await writeAll(writer, bytes);
  assert.equal(writer.calls.length, 256);
  assert.deepEqual(concat(writer.calls), bytes);
});

Deno.test("writeAll() does not write when there is nothing to write", async () => {
  const writer = slowWriter(3);
  await writeAll(writer, new Uint8Array(0));
  assert.equal(writer.calls.length, 0);
});

Deno.test("writeAll() passes a write error on", async () => {
  const writer = {
    write(): Promise<number> {
      return Promise.reject(new Deno.errors.BrokenPipe("gone"));
    },
  };
  await assert.rejects(writeAll(writer, encoder.encode("x")), Deno.errors.BrokenPipe);
});

Deno.test("the limits are the 256-byte buffer of the original", () => {
  assert.equal(MAX_BUFFER_SIZE, 256);
  assert.equal(MAX_MESSAGE_BYTES, 255);
  assert.ok(READ_BUFFER_SIZE >= MAX_BUFFER_SIZE);
});

Deno.test("readInputMessages() never sends the \r of a split \r\n as a message of its own", async () => {
  const cases = [
    "x".repeat(255) + "\r\n", // the \r is byte 256, just past the limit
    "x".repeat(510) + "\r\n", // the same after a first full piece
  ];
  for (const text of cases) {
    const input = encoder.encode(text);
    const whole = await collectMessages(new ChunkReader([input]));
    for (let point = 0; point <= input.length; point++) {
      const messages = await collectMessages(new ChunkReader(splitAt(input, [point])));
      assert.deepEqual(messages, whole, `split at byte ${point}`);
    }
    assert.ok(
      whole.every((message) => message.length === 255),
      JSON.stringify(whole.map((m) => m.length)),
    );
  }
  // At end of input too: a trailing \r is dropped, not sent as an empty message.
  const atEnd = await collectMessages(new ChunkReader([encoder.encode("x".repeat(255) + "\r")]));
  assert.deepEqual(atEnd.map((message) => message.length), [255]);
});

Deno.test("LineFramer.wholeLinesEnd() offers a block only of whole, short lines without \\r", () => {
  const cases: [string, string, number][] = [
    // [what the framer already holds, the chunk, expected end]
    ["", "a\nbb\n", 5], // every line whole: the block is the chunk
    ["", "a\nbb\npart", 5], // the unfinished tail is left for push()
    ["", "no newline yet", 0],
    ["", "a\r\nb\n", 0], // a \r before \n must be dropped line by line
    ["", "a\rb\nc\n", 0], // a \r inside a line is text, but push() handles any \r
    ["", "a\nb\npart\r", 4], // a \r in the unfinished tail is push()'s business
    ["", `${"x".repeat(100)}\n`.repeat(10), 1010], // short lines, passed several at a time
    ["", `${"x".repeat(200)}\n${"x".repeat(100)}\n${"y".repeat(256)}\n`, 0], // the third too long
    ["", `${"x".repeat(255)}\n`, 256], // exactly the limit
    ["", `ok\n${"x".repeat(256)}\n`, 0], // a line over the limit needs its error
    ["held", "tail\nnext\n", 0], // the first line started in an earlier chunk
  ];
  for (const [held, chunk, expected] of cases) {
    const framer = new LineFramer();
    if (held !== "") framer.push(encoder.encode(held));
    assert.equal(framer.wholeLinesEnd(encoder.encode(chunk)), expected, JSON.stringify(chunk));
    assert.equal(framer.bufferedBytes, held.length, "wholeLinesEnd() changes nothing");
  }
  const discarding = new LineFramer();
  discarding.push(encoder.encode("y".repeat(300)));
  assert.equal(discarding.wholeLinesEnd(encoder.encode("rest\nok\n")), 0);
});

/** wholeLinesEnd()'s rule, stated plainly: split at each "\n" and look at every line. */
function referenceWholeLinesEnd(chunk: Uint8Array, maxLineBytes: number): number {
  const end = chunk.lastIndexOf(0x0a) + 1;
  let start = 0;
  for (let i = 0; i < end; i++) {
    if (chunk[i] === 0x0d) return 0;
    if (chunk[i] !== 0x0a) continue;
    if (i - start > maxLineBytes) return 0;
    start = i + 1;
  }
  return end;
}

Deno.test("wholeLinesEnd() (WebAssembly up to 64 KiB, JavaScript beyond) follows its rule on random chunks", () => {
  // A seeded generator, so a failure can be replayed.
  const next = prng(15);
  const random = (below: number) => Math.floor(next() * below);
  // Mostly text, with "\n" and "\r" and bytes on either side of them.
  const alphabet = [0x61, 0x0a, 0x0d, 0x0b, 0x0c, 0x09, 0x8a, 0x8d, 0xc3, 0xa9, 0x00, 0xff];
  const sizes = [0, 1, 15, 16, 17, 31, 32, 255, 256, 257, 4096, 65535, 65536, 65537, 70000];
  let blocks = 0;
  for (let round = 0; round < 3000; round++) {
    const size = round < sizes.length ? sizes[round] : random(round % 50 === 0 ? 80_000 : 700);
    const maxLineBytes = [1, 5, 16, 255, MAX_MESSAGE_BYTES, 64 * 1024][random(6)];
    const chunk = new Uint8Array(size);
    for (let i = 0; i < size; i++) chunk[i] = alphabet[random(alphabet.length)];
    if (random(2) === 0) {
      // Text with a "\n" every so often (now and then one gap too long) and
      // seldom a "\r", so that long chunks pass too.
      const gap = Math.min(maxLineBytes, 300) + 1;
      for (let i = 0; i < size; i++) {
        if (chunk[i] === 0x0a || chunk[i] === 0x0d) chunk[i] = 0x61;
        if (random(gap) === 0 && random(200) !== 0) chunk[i] = 0x0a;
        if (random(20_000) === 0) chunk[i] = 0x0d;
      }
      for (let i = 0; i < size; i += gap) chunk[i] = random(400) === 0 ? 0x61 : 0x0a;
    }
    const expected = referenceWholeLinesEnd(chunk, maxLineBytes);
    if (expected > 0) blocks++;
    assert.equal(wholeLinesEnd(chunk, maxLineBytes), expected, `round ${round}, ${size} bytes`);
  }
  assert.ok(blocks > 300, `only ${blocks} chunks had a block: the test lost its edge`);
});

Deno.test("wholeLinesEnd({ utf8: true }) passes exactly the blocks isValidUtf8() passes, characters across 16-byte blocks too", () => {
  const next = prng(8);
  const random = (below: number) => Math.floor(next() * below);
  // Well-formed characters at the edges of table 3-7's ranges, and ill-formed
  // pieces: overlong, surrogate, past U+10FFFF, stray continuation, cut off.
  const good = [
    [0x61],
    [0x7f],
    [0xc2, 0x80],
    [0xc3, 0xa9],
    [0xdf, 0xbf],
    [0xe0, 0xa0, 0x80],
    [0xe2, 0x82, 0xac],
    [0xed, 0x9f, 0xbf],
    [0xee, 0x80, 0x80],
    [0xef, 0xbf, 0xbf],
    [0xf0, 0x90, 0x80, 0x80],
    [0xf0, 0x9f, 0x98, 0x80],
    [0xf3, 0xbf, 0xbf, 0xbf],
    [0xf4, 0x8f, 0xbf, 0xbf],
  ];
  const bad = [
    [0xc0, 0x80],
    [0xc1, 0xbf],
    [0xe0, 0x9f, 0xbf],
    [0xed, 0xa0, 0x80],
    [0xf0, 0x8f, 0xbf, 0xbf],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80],
    [0xff],
    [0x80],
    [0xbf],
    [0xe2, 0x82],
    [0xf0, 0x9f, 0x98],
    [0xc3, 0x61],
    [0xe2, 0x61, 0xac],
    [0xe2, 0x82, 0xc3, 0x61],
    [0xf0, 0x9f, 0x98, 0xe2, 0x61],
  ];
  let blocks = 0;
  let refused = 0;
  for (let round = 0; round < 4000; round++) {
    const bytes: number[] = [];
    const size = random(round % 40 === 0 ? 3000 : 200);
    while (bytes.length < size) {
      const pick = random(100);
      if (pick < 4) bytes.push(0x0a);
      else if (pick < 5 && random(2) === 0) bytes.push(...bad[random(bad.length)]);
      else bytes.push(...good[random(good.length)]);
    }
    if (random(3) > 0) bytes.push(0x0a);
    const chunk = new Uint8Array(bytes);
    const plain = wholeLinesEnd(chunk, 255);
    const expected = plain > 0 && isValidUtf8(chunk.subarray(0, plain)) ? plain : 0;
    if (expected > 0) blocks++;
    if (plain > 0 && expected === 0) refused++;
    assert.equal(wholeLinesEnd(chunk, 255, { utf8: true }), expected, `round ${round}: ${bytes}`);
  }
  assert.ok(blocks > 500 && refused > 500, `${blocks} passed, ${refused} refused: lost its edge`);
});

Deno.test("wholeLinesEnd() on long runs of text, as a chat or echo client sends them, matches its rule", () => {
  const next = prng(64);
  const random = (below: number) => Math.floor(next() * below);
  // Mostly ASCII text in lines of up to 300 bytes with a character of 2-4
  // bytes now and then; half the chunks then get one fault anywhere (a "\r",
  // a stray byte past ASCII, a character cut short), so every 64-byte stretch
  // and its edges get tried alone.
  const characters = [[0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80]];
  const faults = [[0x0d], [0x80], [0xff], [0xe2, 0x82], [0xc3]];
  let blocks = 0;
  let faulted = 0;
  for (let round = 0; round < 3000; round++) {
    const bytes: number[] = [];
    const size = random(4) === 0 ? random(16_000) : random(1200);
    while (bytes.length < size) {
      const line = random(300);
      for (let i = 0; i < line; i++) {
        if (random(200) === 0) bytes.push(...characters[random(characters.length)]);
        else bytes.push(0x20 + random(95));
      }
      bytes.push(0x0a);
    }
    if (random(2) === 0 && bytes.length > 0) {
      bytes.splice(random(bytes.length), 0, ...faults[random(faults.length)]);
    }
    const chunk = new Uint8Array(bytes);
    for (const maxLineBytes of [255, 64 * 1024]) {
      const plain = referenceWholeLinesEnd(chunk, maxLineBytes);
      assert.equal(wholeLinesEnd(chunk, maxLineBytes), plain, `round ${round}`);
      const valid = plain > 0 && isValidUtf8(chunk.subarray(0, plain)) ? plain : 0;
      if (valid > 0) blocks++;
      if (plain > 0 && valid === 0) faulted++;
      assert.equal(wholeLinesEnd(chunk, maxLineBytes, { utf8: true }), valid, `round ${round}`);
    }
  }
  assert.ok(blocks > 500 && faulted > 500, `${blocks} passed, ${faulted} refused: lost its edge`);
});

Deno.test("wholeLinesEnd() finds \n and \r at every offset of a 16-byte block", () => {
  for (let at = 0; at < 48; at++) {
    const lines = new Uint8Array(64).fill(0x61);
    lines[at] = 0x0a;
    lines[63] = 0x0a;
    // A line of `at` bytes, then one of 62 - at: both within a limit of 62.
    assert.equal(wholeLinesEnd(lines, 62), 64, `\n at ${at}`);
    assert.equal(wholeLinesEnd(lines, Math.max(at, 62 - at) - 1), 0, `too long, \n at ${at}`);
    const withCr = lines.slice();
    withCr[at === 0 ? 1 : at - 1] = 0x0d;
    assert.equal(wholeLinesEnd(withCr, 62), 0, `\r near ${at}`);
    // A "\r" after the last "\n" belongs to the next line: push()'s business.
    const crAfter = lines.slice(0, at + 2);
    crAfter[at + 1] = 0x0d;
    assert.equal(wholeLinesEnd(crAfter, 62), at + 1, `\r after the last \n at ${at}`);
  }
});

Deno.test("encodeLine() and allocateBytes() hand out pieces of shared slabs that never overlap", () => {
  // Enough to fill many 64 KiB slabs, with lines of every kind of character
  // and some past the 8 KiB a slab piece may take.
  const texts: string[] = [];
  const lines: Uint8Array[] = [];
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < 20_000; i++) {
    const text = i % 997 === 0 ? "long ".repeat(2000 + i % 7) : `${i} é€😀 `.repeat(i % 40);
    texts.push(text);
    lines.push(encodeLine(text));
    const piece = allocateBytes(1 + i % 300);
    assert.ok(piece.every((byte) => byte === 0), `piece ${i} is not zeroed`);
    piece.fill(i % 251);
    pieces.push(piece);
  }
  // Only at the end: a later piece written over an earlier one shows here.
  for (let i = 0; i < texts.length; i++) {
    assert.equal(new TextDecoder().decode(lines[i]), texts[i] + "\n", `line ${i}`);
    assert.ok(pieces[i].every((byte) => byte === i % 251), `piece ${i} was overwritten`);
  }
  assert.equal(allocateBytes(100_000).length, 100_000);
});

Deno.test("unpinned() copies a piece of a shared slab and leaves a buffer of its own as it is", () => {
  for (const piece of [allocateBytes(10).fill(7), encodeLine("queued for a slow peer")]) {
    const copy = unpinned(piece);
    assert.notEqual(copy.buffer, piece.buffer);
    assert.equal(copy.buffer.byteLength, piece.length, "the copy keeps no slab alive");
    assert.deepEqual(copy, piece);
  }
  const own = new Uint8Array([1, 2, 3]);
  assert.equal(unpinned(own), own);
  const big = allocateBytes(100_000); // past a slab piece's size: a buffer of its own already
  assert.equal(unpinned(big), big);
});

Deno.test("isValidUtf8() gives the same answers for long inputs, where it uses the native check", () => {
  const long = encoder.encode("你好，世界 ".repeat(40));
  assert.ok(long.length >= 128);
  assert.equal(isValidUtf8(long), true);
  for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe4, 0xbd]]) {
    const broken = new Uint8Array(long.length + bad.length);
    broken.set(long);
    broken.set(bad, long.length);
    assert.equal(isValidUtf8(broken), false, bad.join(","));
  }
});

// ---- grapheme clusters (UAX #29) and lines too long for one message

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** User-perceived characters of several bytes and code points: none may be cut. */
const CLUSTERS: Record<string, string> = {
  "a flag": "🇧🇪",
  "a ZWJ family": "👨‍👩‍👧‍👦",
  "a rainbow flag (ZWJ and a variation selector)": "🏳️‍🌈",
  "a skin tone": "👋🏽",
  "a combining acute": "e\u0301",
  "a letter with four combining marks": "a\u0300\u0301\u0302\u0303",
  "Hangul jamo": "\u1100\u1161\u11a8",
  "a Devanagari conjunct": "क्ष",
  "a Thai consonant and SARA AM": "กำ",
  "a keycap": "1\ufe0f\u20e3",
  "a Chinese character": "中",
};

/** The last cluster boundary at or before `limit`, found by segmenting the whole text. */
function referenceCut(text: string, limit: number): number {
  const bytes = encoder.encode(text);
  if (bytes.length <= limit) return bytes.length;
  let end = 0;
  for (const { segment } of graphemes.segment(text)) {
    const size = encoder.encode(segment).length;
    if (end + size > limit) break;
    end += size;
  }
  return end > 0 ? end : utf8CutPoint(bytes, limit);
}

/** Where a line made of `units`, each one cluster, may be cut for `limit`: after the last unit that fits. */
function cutAfterUnits(units: string[], limit: number): number {
  let end = 0;
  for (const unit of units) {
    const size = encoder.encode(unit).length;
    if (end + size > limit) break;
    end += size;
  }
  return end;
}

/** Checks that `units` really are one cluster each, or the expectations built on them mean nothing. */
function assertClusters(units: string[]): void {
  const segments = [...graphemes.segment(units.join(""))].map(({ segment }) => segment);
  assert.deepEqual(segments, units, "the test's units are not one cluster each");
}

Deno.test("graphemeCutPoint() keeps each kind of cluster whole at every offset around the limit", async (t) => {
  for (const [name, cluster] of Object.entries(CLUSTERS)) {
    await t.step(name, () => {
      const size = encoder.encode(cluster).length;
      // Before and after the cluster: ASCII, Chinese, and an emoji with a skin tone.
      for (const neighbour of ["x", "中", "👋🏽"]) {
        const width = encoder.encode(neighbour).length;
        for (let start = MAX_MESSAGE_BYTES - size - 2; start <= MAX_MESSAGE_BYTES + 1; start++) {
          const count = Math.floor(start / width);
          const units = [
            ...Array(start - count * width).fill("a"),
            ...Array(count).fill(neighbour),
            cluster,
            neighbour,
            neighbour,
          ];
          assertClusters(units);
          const bytes = encoder.encode(units.join(""));
          const cut = graphemeCutPoint(bytes, MAX_MESSAGE_BYTES);
          assert.equal(cut, cutAfterUnits(units, MAX_MESSAGE_BYTES), `${neighbour} at ${start}`);
          // Here the cluster is cut only if its start is the limit.
          if (start < MAX_MESSAGE_BYTES && start + size > MAX_MESSAGE_BYTES) {
            assert.ok(cut <= start, `cut at ${cut} inside the cluster at ${start}`);
          }
        }
      }
    });
  }
});

Deno.test("graphemeCutPoint() keeps a flag whole in a run of flags, whatever the run's parity", () => {
  // Regional indicators pair up from the start of their run, so the cut must
  // count from there: 31 flags are 248 bytes, the 32nd would end at 256.
  for (const before of ["", "a", "ab", "abc", "中", "🇧"]) {
    const text = before + "🇧🇪".repeat(40);
    const bytes = encoder.encode(text);
    assert.equal(graphemeCutPoint(bytes, MAX_MESSAGE_BYTES), referenceCut(text, MAX_MESSAGE_BYTES));
  }
  const flags = encoder.encode("🇧🇪".repeat(40));
  assert.equal(graphemeCutPoint(flags, MAX_MESSAGE_BYTES), 248);
  // One byte before the run moves every boundary by one.
  const shifted = encoder.encode("a" + "🇧🇪".repeat(40));
  assert.equal(graphemeCutPoint(shifted, MAX_MESSAGE_BYTES), 249);
});

/** How many bytes `text` takes in UTF-8, without encoding it. */
function utf8Size(text: string): number {
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    size += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 2 : 3;
  }
  return size;
}

Deno.test("graphemeCutPoint() agrees with Intl.Segmenter for every code point up to U+3FFFF", () => {
  // Each code point twice between "ab" and "yz", cut before, between and
  // after the two: this checks the fast path's plain characters and the
  // segmenter path alike.
  const report: string[] = [];
  for (let code = 0x20; code <= 0x3ffff; code++) {
    if (code >= 0xd800 && code <= 0xdfff) continue; // surrogates are not characters
    const character = String.fromCodePoint(code);
    const text = `ab${character}${character}yz`;
    const bytes = encoder.encode(text);
    const boundaries: number[] = [];
    let end = 0;
    for (const { segment } of graphemes.segment(text)) boundaries.push(end += utf8Size(segment));
    const size = (bytes.length - 4) / 2;
    for (const limit of [2, 2 + size, 2 + 2 * size]) {
      const fits = boundaries.filter((boundary) => boundary <= limit);
      const expected = fits.length > 0 ? fits.at(-1)! : utf8CutPoint(bytes, limit);
      const cut = graphemeCutPoint(bytes, limit);
      if (cut !== expected && report.length < 10) {
        report.push(`U+${code.toString(16)} limit ${limit}: ${cut}, not ${expected}`);
      }
    }
  }
  assert.deepEqual(report, []);
});

/** Seeded random lines of whole clusters of every kind, and the clusters they are made of. */
function randomClusterLine(next: () => number, count: number): string[] {
  const kinds = [...Object.values(CLUSTERS), "x", " ", "你", "好", "，", "é", "😀"];
  const units: string[] = [];
  while (units.length < count) {
    const unit = kinds[next() % kinds.length];
    units.push(unit);
  }
  return units;
}

/** The pieces an oracle that knows the clusters cuts `units` into. */
function piecesOfUnits(units: string[], limit: number): string[] {
  const pieces: string[] = [];
  let piece = "";
  for (const unit of units) {
    if (encoder.encode(piece + unit).length > limit) {
      pieces.push(piece);
      piece = "";
    }
    piece += unit;
  }
  pieces.push(piece);
  return pieces;
}

Deno.test("splitMessage() cuts seeded random lines of clusters only between clusters", () => {
  const next = xorshift32(0xc1a5);
  for (let i = 0; i < 300; i++) {
    const units = randomClusterLine(next, 20 + next() % 200);
    // Two units side by side may join (an é after an e, an x before a mark): take the real clusters.
    const clusters = [...graphemes.segment(units.join(""))].map(({ segment }) => segment);
    const line = encoder.encode(clusters.join(""));
    const pieces = splitMessage(line).map((piece) => fatalDecoder.decode(piece));
    assert.deepEqual(pieces, piecesOfUnits(clusters, MAX_MESSAGE_BYTES), `line ${i}`);
  }
});

Deno.test("splitMessage() cuts a cluster longer than the limit between its code points only", () => {
  // "e" and 200 combining acutes: one cluster of 401 bytes.
  const zalgo = "e" + "\u0301".repeat(200);
  const pieces = splitMessage(encoder.encode(zalgo)).map((piece) => fatalDecoder.decode(piece));
  assert.deepEqual(pieces, ["e" + "\u0301".repeat(127), "\u0301".repeat(73)]);
  // A family too long for one message only because of what is stuck to it.
  const long = "👨‍👩‍👧‍👦" + "\u0301".repeat(130);
  const cut = splitMessage(encoder.encode(long));
  assert.equal(cut[0].length, 255);
  assert.equal(cut.map((piece) => fatalDecoder.decode(piece)).join(""), long);
});

/** Every message `readInputMessages()` yields for `chunks`, with `options`, decoded. */
async function inputMessages(
  chunks: Uint8Array[],
  options?: { piecesAsText?: boolean },
): Promise<string[]> {
  const messages: Uint8Array[] = [];
  for await (const message of readInputMessages(new ChunkReader(chunks), undefined, options)) {
    messages.push(message);
  }
  return messages.map((message) => fatalDecoder.decode(message));
}

Deno.test("readInputMessages() never cuts a cluster that goes on in the next read, at any split point", async (t) => {
  const lines = [
    "a".repeat(250) + "👨‍👩‍👧‍👦" + "b".repeat(300), // the family across 255 and across 254
    "a".repeat(251) + "🇧🇪🇨🇳" + "中".repeat(100),
    "🇧🇪".repeat(80), // 640 bytes of flags: the pairs count from the line's start
    "x".repeat(253) + "e\u0301\u0302" + "y".repeat(260) + "👋🏽",
    "中".repeat(84) + "a\u0300\u0301\u0302\u0303" + "क्ष".repeat(40),
    "/".repeat(252) + "👋🏽" + "/".repeat(300),
  ];
  for (const piecesAsText of [false, true]) {
    await t.step(piecesAsText ? "pieces as text" : "plain pieces", async () => {
      for (const line of lines) {
        const input = encoder.encode(line + "\n");
        const clusters = [...graphemes.segment(line)].map(({ segment }) => segment);
        const whole = piecesOfUnits(clusters, MAX_MESSAGE_BYTES - (piecesAsText ? 1 : 0))
          .map((piece) => piecesAsText && piece.startsWith("/") ? "/" + piece : piece);
        assert.ok(whole.length > 1);
        const split = splitMessage(encoder.encode(line), MAX_MESSAGE_BYTES, { piecesAsText });
        assert.deepEqual(split.map((piece) => fatalDecoder.decode(piece)), whole);
        const splits = [oneByteAtATime(input)];
        for (let point = 0; point <= input.length; point++) splits.push(splitAt(input, [point]));
        for (const chunks of splits) {
          const messages = await inputMessages(chunks, { piecesAsText });
          assert.deepEqual(messages, whole, `chunks of ${chunks.map((chunk) => chunk.length)}`);
        }
      }
    });
  }
});

Deno.test("readInputMessages() holds at most 259 bytes of a long line of emoji between reads", async () => {
  const line = encoder.encode("👨‍👩‍👧‍👦👋🏽🇧🇪e\u0301".repeat(400)); // 17,600 bytes, no "\n"
  let read = 0;
  let sent = 0;
  let most = 0;
  const reader: Reader = {
    read(buffer) {
      // Whatever has been read but not sent is held by readInputMessages().
      most = Math.max(most, read - sent);
      if (read === line.length) return Promise.resolve(null);
      buffer[0] = line[read++];
      return Promise.resolve(1);
    },
  };
  const messages: Uint8Array[] = [];
  for await (const message of readInputMessages(reader)) {
    messages.push(message);
    sent += message.length;
  }
  assert.deepEqual(concat(messages), line);
  assert.ok(most <= MAX_MESSAGE_BYTES + 4, `held ${most} bytes`);
});

Deno.test("splitMessage() with piecesAsText cuts a long line into text only: 254 bytes, / before a /", async (t) => {
  const asText = (text: string) =>
    splitMessage(encoder.encode(text), MAX_MESSAGE_BYTES, { piecesAsText: true })
      .map((piece) => fatalDecoder.decode(piece));
  const cases: [string, string, string[]][] = [
    [
      "a command after 255 bytes stays in its piece",
      "x".repeat(255) + "/nick hijacked",
      ["x".repeat(254), "x/nick hijacked"],
    ],
    [
      "a command after 254 bytes is marked as text",
      "x".repeat(254) + "/quit",
      ["x".repeat(254), "//quit"],
    ],
    [
      "600 slashes: every piece, the first too",
      "/".repeat(600),
      ["/".repeat(255), "/".repeat(255), "/".repeat(93)],
    ],
    ["a line starting //", "//" + "y".repeat(300), ["///" + "y".repeat(252), "y".repeat(48)]],
    // A line that fits is sent as typed: a command stays a command.
    ["a command of 255 bytes", "/nick " + "z".repeat(249), ["/nick " + "z".repeat(249)]],
    ["a short command", "/quit", ["/quit"]],
    ["text typed with //", "//quit", ["//quit"]],
    ["an empty line", "", [""]],
    // A flag across 254: kept whole in the second piece.
    ["a flag across the cut", "x".repeat(250) + "🇧🇪/", ["x".repeat(250), "🇧🇪/"]],
  ];
  for (const [name, text, expected] of cases) {
    await t.step(name, () => {
      const pieces = asText(text);
      assert.deepEqual(pieces, expected);
      for (const piece of pieces) assert.ok(encoder.encode(piece).length <= MAX_MESSAGE_BYTES);
    });
  }
  // Without the option nothing is marked, and the cut is at 255.
  assert.deepEqual(
    splitMessage(encoder.encode("x".repeat(255) + "/quit")).map((p) => fatalDecoder.decode(p)),
    ["x".repeat(255), "/quit"],
  );
});

Deno.test("readInputMessages() with piecesAsText marks every piece of a long line, its short rest too", async () => {
  const text = "/".repeat(600) + "\n" + "x".repeat(255) + "/nick hijacked\n/quit\n//quit\n" +
    "y".repeat(254) + "/quit";
  const expected = [
    "/".repeat(255),
    "/".repeat(255),
    "/".repeat(93),
    "x".repeat(254),
    "x/nick hijacked",
    "/quit",
    "//quit",
    "y".repeat(254),
    "//quit",
  ];
  const input = encoder.encode(text);
  const splits = [oneByteAtATime(input)];
  for (let point = 0; point <= input.length; point += 7) splits.push(splitAt(input, [point]));
  for (const chunks of splits) {
    const messages = await inputMessages(chunks, { piecesAsText: true });
    assert.deepEqual(messages, expected, `chunks of ${chunks.map((chunk) => chunk.length)}`);
  }
});

Deno.test("LineFramer.endsInCarriageReturn sees a held \\r, also in an over-long line being dropped", () => {
  const framer = new LineFramer();
  framer.push(new TextEncoder().encode("abc\r"));
  assert.ok(framer.endsInCarriageReturn);
  framer.push(new TextEncoder().encode("\n" + "z".repeat(300) + "\r"));
  assert.ok(framer.endsInCarriageReturn, "dropping an over-long line");
  framer.push(new TextEncoder().encode("zz"));
  assert.ok(!framer.endsInCarriageReturn);
});

Deno.test("splitMessage() never cuts an escape sequence in two, whatever is around the limit", () => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  for (const sequence of ["\x1b]0;title\x07", "\x1b[38;5;196m", "\u009b31m", "\u009d0;x\u009c"]) {
    for (let before = 230; before <= 256; before++) {
      const line = encoder.encode("x".repeat(before) + sequence + "hi" + "y".repeat(300));
      const pieces = splitMessage(line, MAX_MESSAGE_BYTES, { piecesAsText: true });
      const shown = pieces.map((piece) => sanitize(decoder.decode(piece)));
      assert.equal(shown.join(""), "x".repeat(before) + "hi" + "y".repeat(300), `${before}`);
    }
  }
});

Deno.test("splitMessage() keeps a long escape sequence whole and a finished one where it is", () => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const link = "\x1b]8;;https://example.com/" + "p".repeat(120) + "\x1b\\link\x1b]8;;\x1b\\";
  const line = encoder.encode("y".repeat(150) + link + "z".repeat(200));
  const shown = splitMessage(line).map((piece) => sanitize(decoder.decode(piece))).join("");
  assert.equal(shown, "y".repeat(150) + "link" + "z".repeat(200));
  // A sequence that ends well before the cut does not move it.
  const colour = encoder.encode("\x1b[31m" + "r".repeat(400));
  assert.equal(splitMessage(colour)[0].length, MAX_MESSAGE_BYTES);
});

Deno.test("a byte-order mark at the start of a piece is kept, so the piece is not a command", () => {
  const piece = new TextEncoder().encode("\uFEFF/quit");
  assert.equal(decodeUtf8(piece), "\uFEFF/quit");
});
