/**
 * In-process tests of server.ts: real sockets on 127.0.0.1, port 0.
 */
import assert from "node:assert/strict";
import { startServer, takeToken } from "../server.ts";
import { ANNOUNCE_LIMIT } from "../room.ts";
import { hasControlCharacters } from "../line_buffer.ts";
import { bytes, disposeAll, join, NEEDS_SPAWN, room, TestClient, TestServer } from "./util.ts";

Deno.test("server welcomes a client by its default name and announces it to the others", async () => {
  await using server = new TestServer();
  using alice = await server.connect();
  assert.equal(await alice.line(), "* welcome, you are user1 (type /help for commands)");
  using bob = await server.connect();
  assert.equal(await bob.line(), "* welcome, you are user2 (type /help for commands)");
  assert.equal(await alice.line(), "* user2 joined");
  await server.waitLog((line) => /^connected 127\.0\.0\.1:\d+ id=2 user2$/.test(line));
});

Deno.test("server relays a line to every other client but not back to its sender", async () => {
  await using server = new TestServer();
  const [alice, bob, carol] = await room(server, 3);
  using _clients = disposeAll(alice, bob, carol);
  await alice.send("hello 你好\n");
  assert.equal(await bob.until(/^</), "<user1> hello 你好");
  assert.equal(await carol.until(/^</), "<user1> hello 你好");
  await server.waitLog((line) => line === "<user1> hello 你好");
  // Alice's next line proves she was not sent her own message.
  await bob.send("reply\n");
  assert.equal(await alice.until(/^</), "<user2> reply");
});

Deno.test("server reassembles Chinese text sent one byte at a time", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  const text = "你好，世界！这是一个测试。🙂";
  for (const byte of bytes(text + "\n")) {
    await alice.conn.write(new Uint8Array([byte]));
  }
  assert.equal(await bob.until(/^</), `<user1> ${text}`);
});

Deno.test("server answers a line over 255 bytes with ERR and keeps every other line", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  const exact = "界".repeat(85); // 255 bytes: the longest legal message
  await alice.send(`before\n${"x".repeat(256)}\n${exact}\n${"y".repeat(100_000)}\nafter\n`);
  assert.equal(await alice.line(), "ERR line too long (max 255 bytes)");
  assert.equal(await alice.line(), "ERR line too long (max 255 bytes)");
  assert.equal(await bob.until(/^</), "<user1> before");
  assert.equal(await bob.line(), `<user1> ${exact}`);
  assert.equal(await bob.line(), "<user1> after");
});

Deno.test("server accepts a 255-byte line ending in CRLF and drops the CR", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.send(`${"z".repeat(255)}\r\nshort\r\n`);
  assert.equal(await bob.until(/^</), `<user1> ${"z".repeat(255)}`);
  assert.equal(await bob.line(), "<user1> short");
});

Deno.test("server answers invalid UTF-8 with ERR and goes on", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.conn.write(new Uint8Array([0x61, 0xff, 0xfe, 0x0a, 0xe4, 0xbd, 0x0a]));
  await alice.send("fine\n");
  assert.equal(await alice.line(), "ERR invalid UTF-8");
  assert.equal(await alice.line(), "ERR invalid UTF-8");
  assert.equal(await bob.until(/^</), "<user1> fine");
});

Deno.test("server strips control characters so no escape sequence reaches another client", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.send("\x1b[2J\x1b]0;owned\x07red\u009b31m\ttab\x7f\n");
  const relayed = await bob.until(/^</);
  assert.equal(relayed, "<user1> red\ttab");
  assert.ok(!hasControlCharacters(relayed));
});

Deno.test("/nick renames, announces to everyone, and refuses taken, reserved and invalid names", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.send("/nick alice\n");
  assert.equal(await alice.line(), "* user1 is now alice");
  assert.equal(await bob.until(/^\*/), "* user1 is now alice");
  for (
    const [name, error] of [
      ["ALICE", "ERR name taken: ALICE"],
      ["ａｌｉｃｅ", "ERR invalid name: use 1-32 letters, digits, _ or -"],
      ["Server", "ERR name reserved: Server"],
      ["user1", "ERR name reserved: user1"],
      ["bad name", "ERR invalid name: use 1-32 letters, digits, _ or -"],
      ["a\u200bb", "ERR invalid name: use 1-32 letters, digits, _ or -"],
      ["x".repeat(33), "ERR invalid name: use 1-32 letters, digits, _ or -"],
    ]
  ) {
    await bob.send(`/nick ${name}\n`);
    assert.equal(await bob.line(), error, name);
  }
  await bob.send("/nick\n");
  assert.equal(await bob.line(), "ERR usage: /nick NAME");
  await bob.send("/nick 张伟\n");
  assert.equal(await bob.line(), "* user2 is now 张伟");
  await bob.send("hi\n");
  assert.equal(await alice.until(/^</), "<张伟> hi");
  // A client may change the case of its own name.
  await alice.send("/nick Alice\n");
  assert.equal(await alice.line(), "* alice is now Alice");
});

Deno.test("/list shows one line per client like CLIENT LIST, then the count", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await bob.send("/nick bob\n");
  await alice.until("* user2 is now bob");
  await alice.send("/list\n");
  const port = (alice.conn.localAddr as Deno.NetAddr).port;
  assert.match(
    (await alice.line())!,
    new RegExp(`^\\* id=1 name=user1 addr=127\\.0\\.0\\.1:${port} age=\\d+ idle=\\d+$`),
  );
  assert.match((await alice.line())!, /^\* id=2 name=bob addr=127\.0\.0\.1:\d+ age=\d+ idle=\d+$/);
  assert.equal(await alice.line(), "* 2 clients");
});

Deno.test("/help lists the commands and an unknown command is an error", async () => {
  await using server = new TestServer();
  using alice = await join(server);
  await alice.send("/help\n/frobnicate now\n");
  const help = [];
  for (let i = 0; i < 7; i++) help.push(await alice.line());
  assert.deepEqual(help.map((line) => line!.split(/\s+/)[1]), [
    "/nick",
    "/list",
    "/msg",
    "/me",
    "/quit",
    "/help",
    "//text",
  ]);
  assert.equal(await alice.line(), "ERR unknown command /frobnicate (try /help)");
});

Deno.test("/quit says bye, announces the leave and closes with FIN both ways", async () => {
  await using server = new TestServer({ trace: true });
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.send("/quit\n");
  assert.equal(await alice.line(), "* bye");
  // The server's FIN: read returns end of stream, not a reset.
  assert.equal(await alice.line(), null);
  assert.equal(await bob.until(/^\*/), "* user1 left (quit)");
  await alice.conn.closeWrite();
  await server.waitLog((line) => / FIN received/.test(line));
  await server.waitLog((line) => / closed \(socket released\)/.test(line));
  const steps = server.logs.filter((line) =>
    line.startsWith("trace ") &&
    !line.includes(":" + (bob.conn.localAddr as Deno.NetAddr).port + " ")
  );
  assert.deepEqual(steps.map((line) => line.split(" ")[2]), ["accepted", "FIN", "FIN", "closed"]);
  assert.match(steps[1], /FIN sent/);
  assert.match(steps[2], /FIN received/);
  await server.waitLog((line) => /^closed 127\.0\.0\.1:\d+ id=1 user1 \(quit\)$/.test(line));
  assert.equal(server.server.clientCount, 1);
});

Deno.test("a client's half-close still delivers its lines, then the server closes its side", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  await alice.send("one\ntwo\n/list\n");
  await alice.conn.closeWrite();
  assert.equal(await bob.until(/^</), "<user1> one");
  assert.equal(await bob.line(), "<user1> two");
  assert.equal(await bob.line(), "* user1 left (eof)");
  // Alice still gets the answer to what she sent before her FIN, then the server's FIN.
  assert.deepEqual((await alice.lines.rest()).slice(-3).map((line) => line.split(" ")[1]), [
    "id=1",
    "id=2",
    "2",
  ]);
  await server.waitLog((line) => / id=1 user1 \(eof\)$/.test(line));
});

Deno.test({
  name: "a client that vanishes with a reset is removed without disturbing the others",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using server = new TestServer();
    using bob = await join(server);
    // Deno's close() always sends FIN; SO_LINGER 0 makes Python's close send RST.
    const aborter = new Deno.Command("python3", {
      args: ["-c", ABORTING_PEER, String(server.port)],
      stdout: "null",
    }).spawn();
    assert.equal(await bob.until(/^\* user\d+ left/), "* user2 left (reset)");
    assert.equal((await aborter.status).code, 0);
    await bob.send("/list\n");
    assert.match((await bob.line())!, /^\* id=1 /);
    assert.equal(await bob.line(), "* 1 client");
  },
});

/** Connects, reads the welcome line, then aborts the connection with RST. */
const ABORTING_PEER = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(1024)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;

Deno.test("console lines reach every client as <server> text; /help, /list, /kick ID and NAME work", async () => {
  await using server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  server.server.console("hello from the console");
  assert.equal(await alice.until(/^</), "<server> hello from the console");
  assert.equal(await bob.until(/^</), "<server> hello from the console");
  server.server.console("/list");
  await server.waitLog((line) => line === "* 2 clients");
  server.server.console("/kick 9");
  await server.waitLog((line) => line === "no client with id 9 (see /list)");
  server.server.console("/help");
  await server.waitLog((line) => line.startsWith("* /kick ID or NAME "));
  server.server.console("/kick 1");
  assert.equal(await alice.line(), "* kicked by server");
  assert.equal(await alice.line(), null);
  assert.equal(await bob.until(/^\*/), "* user1 left (kicked)");
  server.server.console("/kick USER2");
  assert.equal(await bob.line(), "* kicked by server");
  assert.equal(await bob.line(), null);
  await server.waitLog((line) => /^closed 127\.0\.0\.1:\d+ id=2 user2 \(kicked\)$/.test(line));
});

Deno.test("shutdown tells every client, sends FIN, and finishes even if a peer never answers", async () => {
  const server = new TestServer();
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  const started = Date.now();
  const shutdown = server.server.shutdown();
  assert.equal(await alice.line(), "* server shutting down");
  assert.equal(await alice.line(), null);
  assert.equal(await bob.line(), "* server shutting down");
  await alice.conn.closeWrite(); // alice answers with her FIN; bob never does
  await shutdown;
  assert.ok(Date.now() - started < 3000, "shutdown must end inside 3 s");
  assert.equal(server.server.connectionCount, 0);
  const done = await server.waitLog((line) => line.startsWith("shut down in "));
  assert.match(done, /^shut down in (19|20|21)\d\d ms; 1 closed without their FIN$/);
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.port }));
});

Deno.test("the shutdown notice goes ahead of a backlog, so a busy client learns of it at once", async () => {
  await using server = new TestServer({ maxQueueBytes: 64 * 1024 * 1024, maxRate: 0 });
  const [alice, bob] = await room(server, 2);
  using _clients = disposeAll(alice, bob);
  // 16 MB for bob, who is not reading: far more than the kernel's buffers hold.
  const lines = 64_000;
  const text = "x".repeat(240);
  await alice.send(Array.from({ length: lines }, (_, i) => `${i} ${text}\n`).join(""));
  await server.waitLog((line) => line.startsWith(`<user1> ${lines - 1} `));
  const shutdown = server.server.shutdown();
  let before = 0;
  while ((await bob.until(/^(<user1> |\* server shutting down$)/)).startsWith("<")) before++;
  assert.ok(before < lines, `the notice came after all ${before} queued lines`);
  bob.conn.close();
  alice.conn.close();
  await shutdown;
});

Deno.test("the client after --max-clients gets ERR server full and a clean close", async () => {
  await using server = new TestServer({ maxClients: 1 });
  using alice = await join(server);
  using bob = await server.connect();
  assert.equal(await bob.line(), "ERR server full (max 1 client)");
  assert.equal(await bob.line(), null);
  await server.waitLog((line) => /^refused 127\.0\.0\.1:\d+: server full/.test(line));
  await alice.send("/list\n");
  assert.equal(await alice.until(/clients?$/), "* 1 client");
});

Deno.test("a flooding client is paced at --max-rate: nothing is lost and others get through", async () => {
  await using server = new TestServer({ maxRate: 100 });
  const [flooder, alice, bob] = await room(server, 3);
  using _clients = disposeAll(flooder, alice, bob);
  const flood = 300; // three times the burst: two seconds of pacing at 100 lines a second
  await flooder.send(Array.from({ length: flood }, (_, i) => `flood ${i}\n`).join(""));
  // The flood is all sent and its first line is through; now alice speaks.
  assert.equal(await bob.until(/^</), "<user1> flood 0");
  await alice.send("hello\n");
  const seen: string[] = [];
  while (seen.length < flood) seen.push(await bob.until(/^</)); // 299 flood lines and hello
  const expected = Array.from({ length: flood - 1 }, (_, i) => `<user1> flood ${i + 1}`);
  assert.deepEqual(seen.filter((line) => line !== "<user2> hello"), expected, "lost or reordered");
  // Without pacing the whole flood, read at once, would be relayed before alice's line.
  assert.ok(seen.indexOf("<user2> hello") < flood - 1, "alice waited for the whole flood");
});

Deno.test("a client being paced is not idle: every held line is relayed, nobody is timed out", async () => {
  // 40 lines at 20 a second: half go at once, the rest over a second, far past the 200 ms timeout.
  await using server = new TestServer({ maxRate: 20, idleTimeoutMs: 200 });
  const [flooder, reader] = await room(server, 2);
  using _clients = disposeAll(flooder, reader);
  const flood = 40;
  await flooder.send(Array.from({ length: flood }, (_, i) => `line ${i}\n`).join(""));
  for (let i = 0; i < flood; i++) {
    assert.equal(await reader.until(/^(<user1> |\* user1 left)/), `<user1> line ${i}`);
    await reader.send("ack\n"); // the reader talks too, or it would be the idle one
  }
  assert.equal(server.logs.filter((line) => line.includes("user1 (idle timeout)")).length, 0);
});

Deno.test("a client paused by flood control answers a shutdown at once", async () => {
  // At one line a second each held line waits up to a second; the FIN must not.
  await using server = new TestServer({ maxRate: 1 });
  const [flooder, reader] = await room(server, 2);
  using _clients = disposeAll(flooder, reader);
  await flooder.send("one\ntwo\nthree\n");
  assert.equal(await reader.until(/^</), "<user1> one"); // the rest are held
  const shutdown = server.server.shutdown();
  await flooder.until(/^\* server shutting down$/);
  await flooder.conn.closeWrite();
  await reader.until(/^\* server shutting down$/);
  await reader.conn.closeWrite();
  await shutdown;
  const done = await server.waitLog((line) => line.startsWith("shut down in "));
  const ms = Number(/^shut down in (\d+) ms$/.exec(done)?.[1]);
  assert.ok(ms < 500, `${done}: the paused client's FIN waited for its pause`);
});

Deno.test("the flood-control bucket holds at most one second's lines, however long it sat full", () => {
  const rate = 100;
  const bucket = { tokens: rate, tokensAt: 0 };
  const takenBy = (now: number, tries: number) => {
    let taken = 0;
    for (let i = 0; i < tries; i++) if (takeToken(bucket, rate, now)) taken++;
    return taken;
  };
  assert.equal(takenBy(0, 300), rate, "the first burst");
  assert.equal(takenBy(0, 10), 0, "an empty bucket");
  assert.equal(takenBy(50, 300), 5, "refilled at 100 a second: 5 in 50 ms");
  assert.equal(takenBy(5_000, 300), rate, "after 5 s full, still one second's worth");
  takenBy(6_000, 1); // a line from a full bucket, then a quiet second and a bit
  assert.equal(takenBy(7_200, 300), rate, "the time spent full is not credited again");
  assert.equal(takenBy(7_210, 300), 1, "a line each 10 ms");
  assert.equal(takenBy(1_000, 1), 0, "a clock gone back owes nothing...");
  assert.equal(takenBy(1_010, 1), 1, "...and refills from where it is");
  assert.throws(() => startServer({ port: 0, maxRate: 0.5 }), RangeError);
});

Deno.test("idle timeout closes only the silent client; receiving does not count as activity", async () => {
  await using server = new TestServer({ idleTimeoutMs: 300 });
  const [quiet, talker] = await room(server, 2);
  using _clients = disposeAll(quiet, talker);
  let notice = "";
  // The talker keeps talking; the quiet one only receives, so only it times out.
  while (notice !== "* idle timeout, bye") {
    await talker.send("tick\n");
    notice = await quiet.until(/^(<user2> tick|\* idle timeout, bye)$/);
  }
  assert.equal(await quiet.until(/^\*|^$/).catch(() => null), null);
  await talker.send("/list\n");
  assert.equal(await talker.until(/^\* \d+ clients?$/), "* 1 client");
});

Deno.test("echo mode sends back every valid line byte for byte and nothing else", async () => {
  await using server = new TestServer({ mode: "echo" });
  using client = await server.connect();
  const lines = ["hello", "你好，世界", "", "🙂".repeat(63), "\ttab"];
  await client.send(lines.join("\n") + "\n");
  for (const line of lines) assert.equal(await client.line(), line);
  await client.send(`a\n${"x".repeat(256)}\nb\r\n`);
  client.conn.write(new Uint8Array([0xc0, 0xaf, 0x0a]));
  await client.send("c\n");
  assert.deepEqual(
    [
      await client.line(),
      await client.line(),
      await client.line(),
      await client.line(),
      await client.line(),
    ],
    ["a", "ERR line too long (max 255 bytes)", "b", "ERR invalid UTF-8", "c"],
  );
  await client.conn.closeWrite();
  assert.equal(await client.line(), null);
  assert.equal(client.lines.tail, "");
});

Deno.test("joins, leaves and renames are not announced once the room is over ANNOUNCE_LIMIT", async () => {
  await using server = new TestServer();
  const clients: TestClient[] = [];
  using _clients = { [Symbol.dispose]: () => clients.forEach((c) => c[Symbol.dispose]()) };
  for (let i = 0; i < ANNOUNCE_LIMIT; i++) clients.push(await join(server));
  // The first client hears every join up to the limit.
  for (let id = 2; id <= ANNOUNCE_LIMIT; id++) {
    assert.equal(await clients[0].line(), `* user${id} joined`);
  }
  const crowd = await join(server);
  clients.push(crowd);
  await crowd.send("/nick latecomer\nhello from the crowd\n");
  assert.equal(await crowd.line(), `* user${ANNOUNCE_LIMIT + 1} is now latecomer`);
  // No join or rename notice came before the message: the room is too big for them.
  assert.equal(await clients[0].line(), "<latecomer> hello from the crowd");
  // Once it has left, the room is back at the limit, so the leave is announced.
  clients.pop()!.conn.close();
  assert.equal(await clients[0].line(), "* latecomer left (eof)");
});

Deno.test("echo mode gives the same answers whichever way the lines are cut into reads", async () => {
  await using server = new TestServer({ mode: "echo" });
  using client = await server.connect();
  // A block of good lines ending in a partial line, the partial line's end with a
  // bad line in the same read, then good lines again.
  await client.send("one\ntwo\nthr");
  assert.equal(await client.line(), "one");
  assert.equal(await client.line(), "two");
  // (0xfe: a byte that is never UTF-8, and unlike 0xff never telnet's.)
  await client.conn.write(new Uint8Array([...bytes("ee\nfour\n"), 0xfe, 0x0a, ...bytes("five\n")]));
  await client.send("六\n七\n");
  const expected = ["three", "four", "ERR invalid UTF-8", "five", "六", "七"];
  for (const line of expected) assert.equal(await client.line(), line);
});
