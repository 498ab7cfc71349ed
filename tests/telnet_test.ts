/**
 * Unit tests of telnet.ts: commands taken out of the stream whatever the
 * chunk boundaries, option requests refused, CR NUL made a line end.
 */
import assert from "node:assert/strict";
import { hasTelnetBytes, MAX_SUBNEGOTIATION_BYTES, TelnetFilter } from "../telnet.ts";

const IAC = 255, DONT = 254, DO = 253, WONT = 252, WILL = 251, SB = 250, SE = 240;
const IP = 244, TIMING_MARK = 6, ECHO = 1, NAWS = 31, AYT = 246;

const encoder = new TextEncoder();
const text = (s: string) => [...encoder.encode(s)];

/** Runs `input` through a new filter cut at every `cuts`, and returns all data and replies. */
function run(input: number[], cuts: number[] = []): { data: number[]; reply: number[] } {
  const filter = new TelnetFilter();
  const data: number[] = [];
  const reply: number[] = [];
  let start = 0;
  for (const end of [...cuts, input.length]) {
    const out = filter.filter(new Uint8Array(input.slice(start, end)));
    data.push(...out.data);
    if (out.reply) reply.push(...out.reply);
    start = end;
  }
  return { data, reply };
}

/** Every way of cutting `input` in two. */
function everyCut(input: number[]): number[][] {
  return Array.from({ length: input.length + 1 }, (_, i) => [i]);
}

const cases: { name: string; input: number[]; data: number[]; reply: number[] }[] = [
  {
    name: "Ctrl-C (IP, then DO TIMING-MARK) is removed and answered WONT",
    input: [...text("hi"), IAC, IP, IAC, DO, TIMING_MARK, ...text("there\r\n")],
    data: text("hithere\r\n"),
    reply: [IAC, WONT, TIMING_MARK],
  },
  {
    name: "WILL is answered DONT, DO WONT; DONT and WONT need no answer",
    input: [IAC, WILL, NAWS, IAC, DO, ECHO, IAC, DONT, ECHO, IAC, WONT, NAWS, ...text("x")],
    data: text("x"),
    reply: [IAC, DONT, NAWS, IAC, WONT, ECHO],
  },
  {
    name: "a subnegotiation is removed whole, IAC IAC inside it included",
    input: [IAC, SB, NAWS, 0, 80, IAC, IAC, 24, IAC, SE, ...text("ok")],
    data: text("ok"),
    reply: [],
  },
  {
    name: "IAC IAC is the data byte 255",
    input: [...text("a"), IAC, IAC, ...text("b")],
    data: [...text("a"), 255, ...text("b")],
    reply: [],
  },
  {
    name: "CR NUL ends a line; a NUL elsewhere stays (sanitising removes it later)",
    input: text("hi\r\0there\0\r\n"),
    data: text("hi\r\nthere\0\r\n"),
    reply: [],
  },
  {
    name: "an IAC before a verb and a line end is kept as data",
    input: [...text("a"), IAC, DONT, 0x0a, IAC, WILL, 0x0d],
    data: [...text("a"), IAC, DONT, 0x0a, IAC, WILL, 0x0d],
    reply: [],
  },
  {
    name: "an IAC before no command (a Synch whose DM went as urgent data) is removed",
    input: [...text("ab"), IAC, IP, IAC, ...text("cd\r\n")],
    data: text("abcd\r\n"),
    reply: [],
  },
  {
    name: "one-byte commands (AYT) are removed",
    input: [...text("你"), IAC, AYT, ...text("好")],
    data: text("你好"),
    reply: [],
  },
];

for (const c of cases) {
  Deno.test(`TelnetFilter: ${c.name}, wherever the chunks are cut`, () => {
    for (const cuts of [[], ...everyCut(c.input)]) {
      assert.deepEqual(run(c.input, cuts), { data: c.data, reply: c.reply }, `cut at ${cuts}`);
    }
  });
}

Deno.test("TelnetFilter: a CR held from before the filter existed still pairs with a NUL", () => {
  const filter = new TelnetFilter(true);
  assert.deepEqual([...filter.filter(new Uint8Array([0, ...text("next")])).data], text("\nnext"));
});

Deno.test("hasTelnetBytes() finds IAC or NUL, and nothing in UTF-8 text", () => {
  assert.ok(hasTelnetBytes(new Uint8Array([...text("a"), IAC])));
  assert.ok(hasTelnetBytes(new Uint8Array(text("a\r\0"))));
  assert.ok(!hasTelnetBytes(new Uint8Array(text("你好 🇧🇪 \r\n"))));
});

Deno.test("TelnetFilter: a subnegotiation that never ends gives its bytes back after the bound", () => {
  const input = [IAC, SB, ...new Array(MAX_SUBNEGOTIATION_BYTES).fill(0x61), ...text("bc\r\n")];
  assert.deepEqual(run(input).data, text("c\r\n"));
});
