/**
 * Stress test of udp_server.ts: datagrams of every size from 0 to 65,507
 * bytes with seeded random content, against the echo service (one answer per
 * datagram, checked exactly) and the chat room (a small peer table that must
 * never grow past its bound). In-process, real sockets on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { DATAGRAM_TOO_LARGE, startUdpServer, type UdpServer } from "../udp_server.ts";
import { hasControlCharacters } from "../line_buffer.ts";
import { say } from "../protocol.ts";
import { TestPeer } from "./udp_util.ts";
import { prng, withDeadline } from "./stress_scenarios.ts";

/** The largest UDP payload over IPv4. */
const MAX_UDP_PAYLOAD = 65_507;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** Every size from 0 to 65,507. */
function sizes(): number[] {
  return Array.from({ length: MAX_UDP_PAYLOAD + 1 }, (_, size) => size);
}

/** Up to this size each datagram's content is made afresh; larger ones are cut from pools. */
const FRESH_BYTES = 1024;

/** Random bytes, and random valid text (Chinese, controls, newlines), made once. */
function pools(random: () => number): { bytes: Uint8Array; text: Uint8Array } {
  const bytes = new Uint8Array(2 * MAX_UDP_PAYLOAD);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return { bytes, text: randomText(2 * MAX_UDP_PAYLOAD, random) };
}

const TEXT_PIECES = ["你", "好", "\x1b[2J", "\t", "\n", "\r", "a", "🙂", "\u009b", "\u0000"];

/** At least `size` bytes of random pieces of text. */
function randomText(size: number, random: () => number): Uint8Array {
  const encoded = new Uint8Array(size + 8);
  for (let length = 0; length < size;) {
    const piece = TEXT_PIECES[Math.floor(random() * TEXT_PIECES.length)];
    length += encoder.encodeInto(piece, encoded.subarray(length)).written;
  }
  return encoded;
}

/**
 * Datagram `index` of `size` bytes: random bytes, random valid text (Chinese,
 * controls, newlines), or plain ASCII ending in "\n", in turn, so that every
 * answer the server has is reached. Over FRESH_BYTES, the random kinds are a
 * slice of a pool at a random offset: the server refuses those by size.
 */
function datagram(
  index: number,
  size: number,
  random: () => number,
  pool: { bytes: Uint8Array; text: Uint8Array },
): Uint8Array {
  const kind = index % 3;
  if (kind < 2 && size > FRESH_BYTES) {
    const from = kind === 0 ? pool.bytes : pool.text;
    const offset = Math.floor(random() * (from.length - size));
    return from.slice(offset, offset + size);
  }
  const bytes = new Uint8Array(size);
  if (kind === 0) {
    for (let i = 0; i < size; i++) bytes[i] = Math.floor(random() * 256);
    return bytes;
  }
  if (kind === 1) {
    // Cut at exactly `size` bytes, which may split a character: invalid UTF-8 then.
    return randomText(size, random).slice(0, size);
  }
  if (size > FRESH_BYTES) bytes.fill(0x61 + (index % 26));
  else for (let i = 0; i < size; i++) bytes[i] = 0x61 + Math.floor(random() * 26);
  if (size > 0) bytes[size - 1] = 0x0a;
  return bytes;
}

/** What the spec says the echo service answers to `bytes`, decided independently. */
function expectedEcho(bytes: Uint8Array): Uint8Array | string {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d && end < bytes.length) end--;
  if (bytes.length > 256) return DATAGRAM_TOO_LARGE;
  if (end > 255) return say.tooLong;
  try {
    strict.decode(bytes);
  } catch {
    return say.invalidUtf8;
  }
  return bytes;
}

Deno.test("udp echo answers each datagram of 0 to 65,507 bytes exactly as specified", async () => {
  const server = startUdpServer({ host: "127.0.0.1", port: 0, mode: "echo", log: () => {} });
  using peer = new TestPeer();
  const random = prng(7);
  const pool = pools(random);
  const counts = { echoed: 0, tooLarge: 0, tooLong: 0, invalidUtf8: 0 };
  try {
    const all = sizes();
    for (const [index, size] of all.entries()) {
      const bytes = datagram(index, size, random, pool);
      // Stop and wait: one datagram out, its one answer back, so none is lost to a full buffer.
      await peer.send(server.addr, bytes);
      const [answer] = await peer.receiveFrom();
      const expected = expectedEcho(bytes);
      if (typeof expected === "string") {
        assert.equal(decoder.decode(answer), expected + "\n", `datagram of ${size} bytes`);
        const kind = expected === DATAGRAM_TOO_LARGE
          ? "tooLarge"
          : expected === say.tooLong
          ? "tooLong"
          : "invalidUtf8";
        counts[kind]++;
      } else {
        assert.deepEqual(answer, expected, `datagram of ${size} bytes`);
        counts.echoed++;
      }
    }
    assert.equal(
      counts.echoed + counts.tooLarge + counts.tooLong + counts.invalidUtf8,
      all.length,
    );
    assert.ok(counts.echoed > 100 && counts.tooLarge > 100 && counts.invalidUtf8 > 100);
    assert.ok(counts.tooLong > 0, "a 256-byte datagram without \\n was among them");
    console.log(`udp echo: ${all.length} datagrams, ${JSON.stringify(counts)}`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("udp chat under a burst of every size keeps its peer table within --max-peers", async () => {
  const maxPeers = 8;
  let handled = 0;
  let waiting: (() => void) | undefined;
  const server: UdpServer = startUdpServer({
    host: "127.0.0.1",
    port: 0,
    maxPeers,
    log: (line) => {
      if (!line.startsWith("datagram from ")) return;
      handled++;
      waiting?.();
    },
  });
  // More sources than the table holds; each one drains what it is sent.
  const peers = Array.from({ length: 32 }, () => new TestPeer());
  const answers: string[] = [];
  const listed = Promise.withResolvers<void>();
  let receiving = true;
  const draining = peers.map(async (peer) => {
    const buffer = new Uint8Array(65_535);
    while (receiving) {
      try {
        const [bytes] = await peer.socket.receive(buffer);
        const answer = decoder.decode(bytes);
        answers.push(answer);
        if (/^\* \d+ peers?\n$/.test(answer)) listed.resolve();
      } catch {
        return; // closed at the end
      }
    }
  });
  const random = prng(11);
  const pool = pools(random);
  let peakPeers = 0;
  try {
    const all = sizes();
    for (const [index, size] of all.entries()) {
      const before = handled;
      const handledOne = new Promise<void>((resolve) => waiting = resolve);
      await peers[index % peers.length].send(server.addr, datagram(index, size, random, pool));
      // The server logs each datagram as it takes it: wait for that, not for time.
      if (handled === before) await handledOne;
      peakPeers = Math.max(peakPeers, server.peerCount);
      assert.ok(server.peerCount <= maxPeers, `peer table at ${server.peerCount}`);
    }
    // The last answers are on their way: a /list from a peer in the table comes after them.
    // peers[0] joined with the first datagram (0 bytes: "I am here").
    await peers[0].send(server.addr, "/list\n");
    await withDeadline(listed.promise, 5000, "no answer to /list");
    const allowed = [
      /^\* welcome, you are user\d+ \(type \/help for commands\)\n$/,
      /^\* user\d+ (joined|left \(.*\))\n$/,
      /^<user\d+> [^\n]*\n$/,
      /^\* (\d+ peers?|id=\d+ name=user\d+ addr=127\.0\.0\.1:\d+ age=\d+ idle=\d+)\n$/,
      new RegExp(`^ERR server full \\(max ${maxPeers} peers\\)\n$`),
      /^ERR (datagram too large \(max 256 bytes\)|line too long \(max 255 bytes\)|invalid UTF-8|one line per datagram)\n$/,
      /^ERR (unknown command \S+ \(try \/help\)|invalid name: .*|name reserved: .*|usage: .*)\n$/,
    ];
    const unexpected = answers.filter((a) => !allowed.some((pattern) => pattern.test(a)));
    assert.deepEqual(unexpected, [], "answers outside the protocol");
    assert.equal(answers.filter((a) => hasControlCharacters(a.slice(0, -1))).length, 0);
    assert.ok(answers.some((a) => a.startsWith("ERR server full")));
    assert.ok(peakPeers === maxPeers, `the table filled up (peak ${peakPeers})`);
    console.log(
      `udp chat: ${all.length} datagrams from ${peers.length} sources, ${answers.length} answers, ` +
        `peak table ${peakPeers}/${maxPeers}`,
    );
  } finally {
    receiving = false;
    await server.shutdown();
    for (const peer of peers) peer[Symbol.dispose]();
    await Promise.all(draining);
  }
});
