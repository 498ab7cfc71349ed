/**
 * What real TCP clients send, over real sockets on 127.0.0.1: telnet's
 * in-band commands, a last line without "\n" before the FIN, and bytes that
 * trickle in without ever ending a line.
 */
import assert from "node:assert/strict";
import { say } from "../protocol.ts";
import {
  bytes,
  disposeAll,
  finish,
  join,
  NEEDS_SPAWN,
  room,
  runProgram,
  TestClient,
  TestServer,
  within,
} from "./util.ts";

const IAC = 255, DO = 253, WONT = 252, WILL = 251, DONT = 254, SB = 250, SE = 240;
const IP = 244, TIMING_MARK = 6, ECHO = 1, NAWS = 31;

/** Reads exactly `count` raw bytes (before any line reader has buffered them). */
async function readBytes(client: TestClient, count: number): Promise<number[]> {
  const got: number[] = [];
  const buffer = new Uint8Array(count);
  while (got.length < count) {
    const reading = client.conn.read(buffer.subarray(0, count - got.length));
    const n = await within(5000, "telnet answer", reading);
    if (n === null) throw new Error("end of stream");
    got.push(...buffer.subarray(0, n));
  }
  return got;
}

Deno.test("telnet: Ctrl-C is answered WONT TIMING-MARK and the session goes on", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _ = disposeAll(alice, bob);
  await alice.send("/nick alice\r\n");
  await alice.until("* user1 is now alice");
  await bob.until("* user1 is now alice");
  // What telnet sends for Ctrl-C, then waits for the answer to DO TIMING-MARK.
  await alice.send([IAC, IP, IAC, DO, TIMING_MARK]);
  assert.deepEqual(await readBytes(alice, 3), [IAC, WONT, TIMING_MARK]);
  await alice.send("after 你好\r\n/fly\r\n");
  assert.equal(await bob.line(), "<alice> after 你好");
  assert.equal(await alice.line(), say.unknownCommand("/fly"), "no ERR invalid UTF-8");
});

Deno.test("telnet: options are refused, subnegotiations removed, CR NUL ends a line", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _ = disposeAll(alice, bob);
  await alice.send([
    IAC,
    WILL,
    NAWS,
    IAC,
    DO,
    ECHO,
    IAC,
    SB,
    NAWS,
    0,
    80,
    0,
    24,
    IAC,
    SE,
    ...bytes("hi\r\0there\r\n"),
  ]); // deno-fmt-ignore
  assert.deepEqual(await readBytes(alice, 6), [IAC, DONT, NAWS, IAC, WONT, ECHO]);
  assert.equal(await bob.line(), "<user1> hi");
  assert.equal(await bob.line(), "<user1> there");
});

Deno.test("telnet: echo mode gives back the text without the commands", async () => {
  await using server = new TestServer({ mode: "echo" });
  using client = await server.connect();
  await client.send([...bytes("a"), IAC, IP, ...bytes("b 好\r\0c\r\n")]);
  assert.equal(await client.line(), "ab 好");
  assert.equal(await client.line(), "c");
  // A CR NUL right after a block of whole lines (echo's fast path) ends a line too.
  await client.send(bytes("d\ne\r\0"));
  assert.equal(await client.line(), "d");
  assert.equal(await client.line(), "e");
  // A CR NUL split between reads after an over-long line, before any telnet byte.
  await client.send("z".repeat(300) + "\r");
  await client.send(bytes("\0xyz\r\0"));
  assert.equal(await client.line(), say.tooLong);
  assert.equal(await client.line(), "xyz");
  // IAC IAC is the data byte 255: not UTF-8, so the line is refused as before.
  await client.send([...bytes("x"), IAC, IAC, ...bytes("\n")]);
  assert.equal(await client.line(), say.invalidUtf8);
});

Deno.test("the last line before the client's FIN is relayed, though it has no newline", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _ = disposeAll(alice, bob);
  await alice.send("first\nno newline 🇧🇪\r");
  await alice.conn.closeWrite();
  assert.equal(await bob.line(), "<user1> first");
  assert.equal(await bob.line(), "<user1> no newline 🇧🇪");
  assert.equal(await bob.line(), say.left("user1", "eof"));
});

Deno.test("the last line before the FIN is echoed, or refused with the usual limits", async () => {
  await using server = new TestServer({ mode: "echo" });
  for (
    const [input, answer] of [
      ["no newline", "no newline"],
      ["x".repeat(300), say.tooLong],
      ["two\nlines", "two|lines"],
    ]
  ) {
    using client = await server.connect();
    await client.send(input);
    await client.conn.closeWrite();
    assert.equal((await client.lines.rest()).join("|"), answer, input);
  }
});

Deno.test({
  name: "nc -N sends a last line without newline and gets it back from echo mode",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using server = new TestServer({ mode: "echo" });
    const nc = runProgram("nc.openbsd", ["-N", "127.0.0.1", String(server.port)]);
    await nc.stdin.write(bytes("no newline"));
    await nc.stdin.close();
    assert.equal(await nc.stdout.line(), "no newline");
    assert.equal((await finish(nc)).code, 0);
  },
});

Deno.test("trickling bytes without a line end is not talking: the trickler times out", async () => {
  await using server = new TestServer({ idleTimeoutMs: 300 });
  using trickler = await join(server);
  using talker = await join(server);
  const trickle = setInterval(() => trickler.conn.write(bytes("x")).catch(() => {}), 30);
  const talk = setInterval(() => talker.conn.write(bytes("hi\n")).catch(() => {}), 30);
  try {
    const port = (trickler.conn.localAddr as Deno.NetAddr).port;
    const timedOut = server.waitLog((line) => line.includes("(idle timeout)"));
    const closed = await within(5000, "idle timeout", timedOut);
    assert.match(
      closed,
      new RegExp(`^closed 127\\.0\\.0\\.1:${port} id=1 user1 \\(idle timeout\\)$`),
    );
    assert.equal(server.server.clientCount, 1, "the one sending lines stays");
  } finally {
    clearInterval(trickle);
    clearInterval(talk);
  }
});
