/**
 * Tests of the room's password (--password-file): auth.ts, the room's gate
 * with fake members, both servers over real loopback sockets, client.ts
 * --password-file end to end, and nc typing the command.
 *
 * Every test that runs a server searches its whole log for the password and
 * for every wrong guess: none may ever be written there.
 */
import assert from "node:assert/strict";
import {
  lockoutLine,
  MAX_PASSWORD_BYTES,
  Password,
  PASSWORD_LOCKOUT_MS,
  PasswordTries,
  passwordTriesKey,
  readPasswordFile,
} from "../auth.ts";
import { RuntimeError } from "../cli.ts";
import { MAX_PASSWORD_TRIES, passwordIn, say } from "../protocol.ts";
import { type MemberLink, Room } from "../room.ts";
import {
  bytes,
  type LineReader,
  NEEDS_SPAWN,
  runProgram,
  runScript,
  type Script,
  TestClient,
  TestServer,
} from "./util.ts";
import { BoundClient, TempDir, withUdpServer } from "./bound_util.ts";
import { TestPeer } from "./udp_util.ts";

/** The room's password in these tests: a space inside, Chinese, an emoji. */
const SECRET = "s3cret 密码 🔑";
/** Wrong guesses, some close to it. */
const GUESSES = ["guess-one", "s3cret 密码", "S3CRET 密码 🔑"];

/** Fails naming the line if any log line holds the password or a guess. */
function assertNoSecretIn(lines: readonly string[]): void {
  assert.ok(lines.length > 0, "there is a log to search");
  for (const line of lines) {
    for (const secret of [SECRET, ...GUESSES, "密码", "s3cret"]) {
      assert.ok(!line.includes(secret), `the log holds ${JSON.stringify(secret)}: ${line}`);
    }
  }
}

// ---- the password and its file

Deno.test("Password matches only the password, in either Unicode normalization form", () => {
  const password = new Password("café " + SECRET);
  assert.ok(password.matches("café " + SECRET));
  assert.ok(password.matches("cafe\u0301 " + SECRET), "NFD is the same password (RFC 8265)");
  for (const wrong of ["", "café", "café " + SECRET + " ", "CAFÉ " + SECRET, "café s3cret"]) {
    assert.ok(!password.matches(wrong), JSON.stringify(wrong));
  }
});

Deno.test("passwordIn() reads /pass PASSWORD as sent, inner spaces included, and nothing else", () => {
  assert.equal(passwordIn(`/pass ${SECRET}`), SECRET);
  assert.equal(passwordIn(`/PASS ${SECRET}`), SECRET);
  assert.equal(passwordIn("/pass"), "");
  assert.equal(passwordIn("/pass   "), "");
  assert.equal(passwordIn(`//pass ${SECRET}`), undefined, "text, not the command");
  assert.equal(passwordIn(`/password ${SECRET}`), undefined);
  assert.equal(passwordIn(`\u001b[A/pass ${SECRET}`), undefined, "an escape before the /");
  assert.equal(passwordIn(SECRET), undefined);
});

Deno.test({
  name: "readPasswordFile() takes the first line of the file without its line end",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using dir = await TempDir.make();
    const cases: [string, string][] = [
      [`${SECRET}\n`, SECRET],
      [`${SECRET}\r\nthe second line is not the password\n`, SECRET],
      [SECRET, SECRET], // no line end at all
      ["x".repeat(MAX_PASSWORD_BYTES), "x".repeat(MAX_PASSWORD_BYTES)],
    ];
    for (const [i, [content, expected]] of cases.entries()) {
      const path = await dir.file(`ok${i}`, content);
      assert.equal(await readPasswordFile("server.ts", path), expected);
    }
  },
});

Deno.test({
  name: "readPasswordFile() refuses a file it cannot use, in one line naming the flag and the file",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using dir = await TempDir.make();
    const cases: [string, string | Uint8Array, string][] = [
      ["empty", "", "its first line, the password, is empty"],
      ["blank", "\nsecret on line two\n", "its first line, the password, is empty"],
      [
        "long",
        "x".repeat(MAX_PASSWORD_BYTES + 1),
        `the password is over ${MAX_PASSWORD_BYTES} bytes (/pass PASSWORD is one line)`,
      ],
      ["spaced", " secret\n", "the password begins or ends with white space"],
      ["trailing", "secret \n", "the password begins or ends with white space"],
      ["control", "sec\u0007ret\n", "the password holds a control character"],
      [
        "latin1",
        new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]),
        "its first line is not UTF-8 text",
      ],
    ];
    for (const [name, content, why] of cases) {
      const path = await dir.file(name, content);
      await assert.rejects(
        () => readPasswordFile("server.ts", path),
        new RuntimeError(`server.ts: cannot use --password-file ${path}: ${why}`),
      );
    }
    const missing = `${dir.path}/missing`;
    await assert.rejects(
      () => readPasswordFile("client.ts", missing),
      new RuntimeError(`client.ts: cannot read --password-file ${missing}: no such file`),
    );
  },
});

Deno.test("PasswordTries locks an address after 3 wrong passwords until the lockout has passed", () => {
  const clock = { now: 0 };
  const tries = new PasswordTries(new Password(SECRET), () => clock.now);
  assert.deepEqual(tries.check("127.0.0.2", "a"), { kind: "wrong", tries: 1 });
  assert.deepEqual(tries.check("127.0.0.2", "b"), { kind: "wrong", tries: 2 });
  assert.deepEqual(tries.check("127.0.0.3", SECRET), { kind: "right" }, "counted per address");
  assert.deepEqual(tries.check("127.0.0.2", "c"), { kind: "wrong", tries: MAX_PASSWORD_TRIES });
  clock.now = PASSWORD_LOCKOUT_MS - 1;
  assert.deepEqual(
    tries.check("127.0.0.2", SECRET),
    { kind: "locked", key: "127.0.0.2", retryMs: 1 },
    "not even checked",
  );
  clock.now = PASSWORD_LOCKOUT_MS;
  assert.deepEqual(tries.check("127.0.0.2", SECRET), { kind: "right" });
  // A right password forgets the wrong ones.
  tries.check("127.0.0.4", "a");
  tries.check("127.0.0.4", SECRET);
  assert.deepEqual(tries.check("127.0.0.4", "b"), { kind: "wrong", tries: 1 });
});

Deno.test("PasswordTries counts an IPv6 /64 as one address, and an IPv4-mapped address as its IPv4", () => {
  assert.equal(passwordTriesKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  assert.equal(passwordTriesKey("fe80::1%eth0"), "fe80::/64");
  assert.equal(passwordTriesKey("::ffff:127.0.0.2"), "127.0.0.2");
  assert.equal(passwordTriesKey("::ffff:7f00:2"), "127.0.0.2");
  const tries = new PasswordTries(new Password(SECRET), () => 0);
  // A new address of the same /64 for each guess gains nothing.
  for (
    const [i, host] of ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"].entries()
  ) {
    assert.deepEqual(tries.check(host, GUESSES[i]), { kind: "wrong", tries: i + 1 }, host);
  }
  assert.deepEqual(tries.check("2001:db8:1:2::4", SECRET), {
    kind: "locked",
    key: "2001:db8:1:2::/64",
    retryMs: PASSWORD_LOCKOUT_MS,
  });
  assert.deepEqual(tries.check("2001:db8:1:3::1", SECRET), { kind: "right" }, "the next /64");
  tries.check("127.0.0.2", "a");
  tries.check("::ffff:127.0.0.2", "b");
  assert.deepEqual(tries.check("::ffff:7f00:2", "c"), { kind: "wrong", tries: 3 });
  assert.deepEqual(tries.lockout("127.0.0.2"), { key: "127.0.0.2", retryMs: PASSWORD_LOCKOUT_MS });
  assert.equal(
    lockoutLine(tries.lockout("127.0.0.2")!),
    "ERR too many wrong passwords from 127.0.0.2: try again in 60 s",
  );
});

Deno.test("PasswordTries tells a locked address how long is left, without counting the asking", () => {
  const clock = { now: 0 };
  const tries = new PasswordTries(new Password(SECRET), () => clock.now);
  assert.equal(tries.lockout("127.0.0.2"), undefined);
  for (const guess of GUESSES) tries.check("127.0.0.2", guess);
  clock.now = 20_500;
  assert.deepEqual(tries.lockout("127.0.0.2"), { key: "127.0.0.2", retryMs: 39_500 });
  assert.equal(
    lockoutLine(tries.lockout("127.0.0.2")!),
    "ERR too many wrong passwords from 127.0.0.2: try again in 40 s",
  );
  clock.now = PASSWORD_LOCKOUT_MS;
  assert.equal(tries.lockout("127.0.0.2"), undefined, "the lockout has passed");
  assert.equal(tries.size, 0, "and the address is forgotten");
});

Deno.test("PasswordTries, when full, forgets no address in its window: a flood cannot unlock the attacker", () => {
  const clock = { now: 0 };
  const tries = new PasswordTries(new Password(SECRET), () => clock.now, 4);
  for (const guess of GUESSES) tries.check("192.0.2.66", guess);
  assert.equal(tries.check("192.0.2.66", SECRET).kind, "locked");
  // The flood: wrong passwords from ever new (forged) addresses, far past the bound.
  for (let i = 1; i <= 100; i++) {
    clock.now = i;
    tries.check(`198.51.100.${i}`, "x");
    assert.ok(tries.size <= 4, `bounded: ${tries.size}`);
  }
  assert.deepEqual(
    tries.check("192.0.2.66", SECRET),
    { kind: "locked", key: "192.0.2.66", retryMs: PASSWORD_LOCKOUT_MS - 100 },
    "still locked: the flood did not push it out",
  );
  // A newcomer while the table is full is not checked, right password or not,
  // until the oldest entry's window ends.
  const full = tries.check("203.0.113.1", SECRET);
  assert.deepEqual(full, {
    kind: "locked",
    key: "203.0.113.1",
    retryMs: PASSWORD_LOCKOUT_MS - 100,
    full: true,
  });
  assert.equal(
    lockoutLine(full as { kind: "locked"; key: string; retryMs: number }),
    "ERR too many wrong passwords lately (from too many addresses): try again in 60 s",
  );
  // Once the oldest windows pass, the table drops those entries first.
  clock.now = PASSWORD_LOCKOUT_MS + 2;
  assert.deepEqual(tries.check("203.0.113.1", SECRET), { kind: "right" });
  assert.equal(tries.size, 1, "only 198.51.100.3 is still in its window");

  // Two addresses taking turns, with the rest of the table locked, cannot
  // evict each other to win their tries back.
  const turns = new PasswordTries(new Password(SECRET), () => clock.now, 2);
  for (const guess of GUESSES) turns.check("192.0.2.1", guess);
  let guesses = 0;
  for (let round = 0; round < 10; round++) {
    for (const host of ["192.0.2.7", "192.0.2.8"]) {
      if (turns.check(host, `guess ${round}`).kind === "wrong") guesses++;
    }
  }
  assert.equal(guesses, 3, "three wrong tries in all: one took the last slot, the other none");
  assert.equal(turns.check("192.0.2.1", SECRET).kind, "locked");
});

// ---- the room's gate, with fake members

const decoder = new TextDecoder();

class FakeLink implements MemberLink {
  lines: string[] = [];
  leaves: { cause: string; notice?: string }[] = [];
  constructor(readonly address: string, readonly host?: string) {}
  deliver(line: Uint8Array): void {
    this.lines.push(decoder.decode(line).replace(/\n$/, ""));
  }
  left(cause: string, notice: Uint8Array | undefined): void {
    this.leaves.push({ cause, notice: notice && decoder.decode(notice).replace(/\n$/, "") });
  }
  take(): string[] {
    return this.lines.splice(0);
  }
}

function gatedRoom(options: { maxMembers?: number; idleTimeoutMs?: number } = {}) {
  const clock = { now: 0 };
  const logs: string[] = [];
  const room = new Room({
    noun: "client",
    password: new PasswordTries(new Password(SECRET), () => clock.now),
    clock: () => clock.now,
    log: (line) => logs.push(line),
    ...options,
  });
  let port = 6000;
  const link = (host = "127.0.0.1") => new FakeLink(`${host}:${port++}`, host);
  return { room, clock, logs, link };
}

Deno.test("Room keeps a member waiting for the password: it sees only the prompt, nobody sees it", () => {
  const { room, logs, link } = gatedRoom();
  const aliceLink = link();
  const alice = room.join(aliceLink)!;
  room.hear(alice, `/pass ${SECRET}`);
  assert.deepEqual(aliceLink.take(), [say.passwordNeeded, say.welcome("user1")]);

  const eveLink = link();
  const eve = room.join(eveLink, "eve")!;
  assert.deepEqual(eveLink.take(), [say.passwordNeeded]);
  assert.equal(eve.name, "user2", "no name until it is in");
  assert.deepEqual(aliceLink.take(), [], "its arrival is not announced");

  for (const line of ["hello", "/nick eve", "/list", "/msg user1 hi", "/me waves", "/help"]) {
    room.hear(eve, line);
  }
  assert.deepEqual(eveLink.take(), Array(6).fill(say.passwordFirst));
  assert.deepEqual(aliceLink.take(), [], "nothing it sends reaches anyone");

  room.hear(alice, "the room talks");
  room.hear(alice, "/me waves");
  room.hear(alice, "/msg user2 are you there?");
  room.hear(alice, "/list");
  assert.deepEqual(eveLink.take(), [], "no line of the room reaches it");
  assert.deepEqual(aliceLink.take().slice(-3), [
    say.noSuchName("user2"),
    "* id=1 name=user1 addr=127.0.0.1:6000 age=0 idle=0",
    "* 1 client",
  ]);
  room.console("/list");
  assert.deepEqual(logs.slice(-3), [
    "* id=1 name=user1 addr=127.0.0.1:6000 age=0 idle=0",
    "* id=2 name=user2 addr=127.0.0.1:6001 age=0 idle=0 waiting for the password",
    "* 1 client (and 1 waiting for the password)",
  ]);

  room.hear(eve, "/pass");
  assert.deepEqual(eveLink.take(), [say.passUsage], "an empty /pass is no try");
  room.hear(eve, `/pass ${SECRET}`);
  assert.deepEqual(eveLink.take(), [say.welcome("user2")]);
  assert.deepEqual(aliceLink.take(), ["* user2 joined"]);
  room.hear(eve, "/nick eve");
  assert.deepEqual(aliceLink.take(), ["* user2 is now eve"]);
  // In already, /pass is answered and neither logged nor relayed.
  room.hear(eve, `/pass ${SECRET}`);
  assert.deepEqual(eveLink.take(), ["* user2 is now eve", say.alreadyIn]);
  assert.deepEqual(aliceLink.take(), []);
  assertNoSecretIn(logs);
});

Deno.test("Room closes a member at its third wrong password, and nobody hears of it", () => {
  const { room, logs, link } = gatedRoom();
  const aliceLink = link();
  const alice = room.join(aliceLink, undefined, true)!;
  assert.deepEqual(aliceLink.take(), [say.welcome("user1")], "checked by the transport");
  const eveLink = link();
  const eve = room.join(eveLink)!;
  for (const guess of GUESSES) room.hear(eve, `/pass ${guess}`);
  assert.deepEqual(eveLink.take(), [
    say.passwordNeeded,
    "ERR wrong password (1 of 3 tries)",
    "ERR wrong password (2 of 3 tries)",
  ]);
  assert.deepEqual(eveLink.leaves, [{
    cause: "wrong password",
    notice: "ERR wrong password (3 of 3 tries): closing",
  }]);
  assert.ok(eve.gone);
  room.hear(eve, `/pass ${SECRET}`);
  assert.deepEqual(eveLink.take(), [], "gone is gone");
  assert.deepEqual(aliceLink.take(), [], "its leave is not announced");
  assert.equal(room.size, 1);
  assert.deepEqual(logs, [
    "wrong password from 127.0.0.1:6001 id=2 (1 of 3 tries)",
    "wrong password from 127.0.0.1:6001 id=2 (2 of 3 tries)",
    "wrong password from 127.0.0.1:6001 id=2 (3 of 3 tries)",
  ]);
  room.hear(alice, "still here");
  assertNoSecretIn(logs);
});

Deno.test("Room counts wrong passwords by address across members, and turns a locked address away", () => {
  const { room, logs, link } = gatedRoom();
  const firstLink = link();
  const first = room.join(firstLink)!;
  room.hear(first, `/pass ${GUESSES[0]}`);
  room.hear(first, `/pass ${GUESSES[1]}`);
  room.hear(first, "/quit");
  assert.deepEqual(firstLink.take(), [
    say.passwordNeeded,
    "ERR wrong password (1 of 3 tries)",
    "ERR wrong password (2 of 3 tries)",
  ]);
  // Back from another port: its address has one try left, not three.
  const secondLink = link();
  room.hear(room.join(secondLink)!, `/pass ${GUESSES[2]}`);
  assert.deepEqual(secondLink.leaves, [{
    cause: "wrong password",
    notice: "ERR wrong password (3 of 3 tries): closing",
  }]);
  // Locked: even the right password is not checked, and the member is closed.
  const thirdLink = link();
  const third = room.join(thirdLink)!;
  room.hear(third, `/pass ${SECRET}`);
  const refusal = "ERR too many wrong passwords from 127.0.0.1: try again in 60 s";
  assert.deepEqual(thirdLink.take(), [say.passwordNeeded, refusal]);
  assert.deepEqual(thirdLink.leaves, [{ cause: "password lockout", notice: undefined }]);
  assert.ok(logs.includes(`refused 127.0.0.1:6002 id=3: ${refusal.slice(4)}`), logs.join("\n"));
  // Another address is not locked.
  const otherLink = link("127.0.0.2");
  room.hear(room.join(otherLink)!, `/pass ${SECRET}`);
  assert.deepEqual(otherLink.take(), [say.passwordNeeded, say.welcome("user4")]);
  assertNoSecretIn(logs);
});

Deno.test("Room counts a waiting member against the limit and times it out like anyone", () => {
  const { room, clock, link } = gatedRoom({ maxMembers: 1, idleTimeoutMs: 1000 });
  const lurkerLink = link();
  room.join(lurkerLink);
  const lateLink = link();
  assert.equal(room.join(lateLink), undefined);
  assert.deepEqual(lateLink.take(), ["ERR server full (max 1 client)"]);
  clock.now = 1000;
  room.sweep();
  assert.deepEqual(lurkerLink.leaves, [{ cause: "idle timeout", notice: say.idle }]);
  assert.equal(room.size, 0);
  // /quit works while waiting.
  const quitterLink = link();
  room.hear(room.join(quitterLink)!, "/quit");
  assert.deepEqual(quitterLink.leaves, [{ cause: "quit", notice: say.bye }]);
});

Deno.test("Room refuses a password for an echo room, which has no room to keep anyone out of", () => {
  assert.throws(
    () =>
      new Room({
        noun: "client",
        chat: false,
        password: new PasswordTries(new Password(SECRET)),
      }),
    RangeError,
  );
});

// ---- the TCP server

Deno.test("server keeps a client out until /pass: no room lines, not in /list, not announced", async () => {
  await using server = new TestServer({ password: new Password(SECRET) });
  using alice = await server.connect();
  assert.equal(await alice.line(), say.passwordNeeded);
  await alice.send(`/pass ${SECRET}\n`);
  assert.equal(await alice.line(), say.welcome("user1"));

  using eve = await server.connect();
  assert.equal(await eve.line(), say.passwordNeeded);
  await server.waitLog((line) => /^connected 127\.0\.0\.1:\d+ id=2 user2$/.test(line));
  // Alice's /list: eve is not there, and no "* user2 joined" came first.
  await alice.send("/list\n");
  assert.match((await alice.line())!, /^\* id=1 name=user1 /);
  assert.equal(await alice.line(), "* 1 client");

  await eve.send("hello everyone\n/list\n/msg user1 psst\n");
  for (let i = 0; i < 3; i++) assert.equal(await eve.line(), say.passwordFirst);
  await alice.send("room talk\n");
  await server.waitLog((line) => line === "<user1> room talk");
  server.server.console("/list");
  await server.waitLog((line) =>
    /^\* id=2 name=user2 addr=127\.0\.0\.1:\d+ age=\d+ idle=\d+ waiting for the password$/.test(
      line,
    )
  );

  // In: its first line is its welcome (not alice's "room talk"), and only now
  // is it announced (alice's first line since her /list: not eve's "hello").
  await eve.send(`/pass ${SECRET}\n`);
  assert.equal(await eve.line(), say.welcome("user2"));
  assert.equal(await alice.line(), "* user2 joined");
  await eve.send("hi, I am in\n");
  assert.equal(await alice.line(), "<user2> hi, I am in");
  await server.waitLog((line) => /^password accepted from 127\.0\.0\.1:\d+ id=2 user2$/.test(line));
  assertNoSecretIn(server.logs);
});

Deno.test("server closes a client at its third wrong password and never logs one", async () => {
  await using server = new TestServer({ password: new Password(SECRET) });
  using alice = await server.connect();
  await alice.send(`/pass ${SECRET}\n`);
  assert.equal(await alice.until(/^\* welcome/), say.welcome("user1"));
  using eve = await server.connect();
  assert.equal(await eve.line(), say.passwordNeeded);
  for (const guess of GUESSES) await eve.send(`/pass ${guess}\n`);
  assert.deepEqual(await eve.lines.rest(), [
    "ERR wrong password (1 of 3 tries)",
    "ERR wrong password (2 of 3 tries)",
    "ERR wrong password (3 of 3 tries): closing",
  ]);
  const port = (eve.conn.localAddr as Deno.NetAddr).port;
  await server.waitLog((line) => line === `closed 127.0.0.1:${port} id=2 user2 (wrong password)`);
  for (let i = 1; i <= 3; i++) {
    assert.ok(server.logs.includes(`wrong password from 127.0.0.1:${port} id=2 (${i} of 3 tries)`));
  }
  // Alice heard nothing of it: her next line answers her own /list.
  await alice.send("/list\n");
  assert.match((await alice.line())!, /^\* id=1 name=user1 /);
  assert.equal(await alice.line(), "* 1 client");
  assertNoSecretIn(server.logs);
});

Deno.test("server counts wrong passwords by address across connections: reconnecting gains no try", async () => {
  await using server = new TestServer({ password: new Password(SECRET) });
  const lockedOut = /^ERR too many wrong passwords from 127\.0\.0\.1: try again in (59|60) s$/;
  // Connected before the lockout, it waits; its password will not be checked either.
  using early = await server.connect();
  assert.equal(await early.line(), say.passwordNeeded);
  {
    using first = await server.connect();
    assert.equal(await first.line(), say.passwordNeeded);
    await first.send(`/pass ${GUESSES[0]}\n/pass ${GUESSES[1]}\n`);
    assert.equal(await first.line(), "ERR wrong password (1 of 3 tries)");
    assert.equal(await first.line(), "ERR wrong password (2 of 3 tries)");
  } // closed: the next connection starts nothing afresh
  using second = await server.connect();
  assert.equal(await second.line(), say.passwordNeeded);
  await second.send(`/pass ${GUESSES[2]}\n`);
  assert.deepEqual(await second.lines.rest(), ["ERR wrong password (3 of 3 tries): closing"]);
  // Each new connection from the address now gets one line and is closed,
  // whatever it sends, the right password included.
  for (let i = 0; i < 5; i++) {
    using again = await server.connect();
    await again.send(`/pass ${i % 2 === 0 ? SECRET : GUESSES[0]}\n`).catch(() => {});
    const lines = await again.lines.rest();
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], lockedOut);
  }
  await early.send(`/pass ${SECRET}\n`);
  const earlyLines = await early.lines.rest();
  assert.equal(earlyLines.length, 1, earlyLines.join("\n"));
  assert.match(earlyLines[0], lockedOut);
  const refused = server.logs.filter((line) =>
    /^refused 127\.0\.0\.1:\d+( id=1)?: too many wrong passwords from 127\.0\.0\.1: /.test(line)
  );
  assert.equal(refused.length, 6, server.logs.join("\n"));
  assert.ok(!server.logs.some((line) => line.startsWith("password accepted")));
  // Another address is not locked.
  using other = await BoundClient.connect("127.0.0.2", server.port);
  assert.equal(await other.line(), say.passwordNeeded);
  await other.send(`/pass ${SECRET}\n`);
  assert.equal(await other.line(), say.welcome("user4"));
  assertNoSecretIn(server.logs);
});

Deno.test("a client that never gives the password holds a slot and is dropped at the idle timeout", async () => {
  await using server = new TestServer({
    password: new Password(SECRET),
    maxClients: 1,
    idleTimeoutMs: 300,
  });
  using lurker = await server.connect();
  assert.equal(await lurker.line(), say.passwordNeeded);
  using late = await server.connect();
  assert.deepEqual(await late.lines.rest(), ["ERR server full (max 1 client)"]);
  assert.deepEqual(await lurker.lines.rest(), [say.idle]);
  await server.waitLog((line) =>
    /^closed 127\.0\.0\.1:\d+ id=1 user1 \(idle timeout\)$/.test(line)
  );
});

// ---- the UDP server

Deno.test("udp server takes a newcomer in only on /pass PASSWORD as its first datagram", async () => {
  await withUdpServer({ password: new Password(SECRET) }, async (server, log) => {
    using alice = new TestPeer("127.0.0.2");
    for (const text of ["/nick alice", "hello", "/list"]) {
      await alice.send(server.addr, text);
      assert.equal(await alice.next(), say.passwordFirst, text);
    }
    await alice.send(server.addr, "/pass");
    assert.equal(await alice.next(), say.passUsage);
    assert.equal(server.peerCount, 0, "nothing kept of a stranger");
    await alice.send(server.addr, `/pass ${SECRET}`);
    assert.equal(await alice.next(), say.welcome("user1"));
    await log.waitFor(`password accepted from 127.0.0.2:${alice.addr.port}`);
    await alice.send(server.addr, "/nick alice");
    assert.equal(await alice.next(), "* user1 is now alice");

    // A second peer: its refusals and its first attempts reach nobody in the room.
    using bob = new TestPeer("127.0.0.3");
    await bob.send(server.addr, "anyone there?");
    assert.equal(await bob.next(), say.passwordFirst);
    await bob.send(server.addr, `/pass ${SECRET}`);
    assert.equal(await bob.next(), say.welcome("user2"));
    assert.deepEqual(await alice.received(), ["* user2 joined"]);
    assertNoSecretIn(log.lines);
  });
});

Deno.test("udp server locks out an address after 3 wrong passwords from any ports and never logs one", async () => {
  await withUdpServer({ password: new Password(SECRET) }, async (server, log) => {
    using alice = new TestPeer("127.0.0.2");
    await alice.send(server.addr, `/pass ${SECRET}`);
    assert.equal(await alice.next(), say.welcome("user1"));
    using guesser = new TestPeer("127.0.0.3");
    for (const guess of GUESSES) await guesser.send(server.addr, `/pass ${guess}`);
    assert.equal(await guesser.next(), "ERR wrong password (1 of 3 tries)");
    assert.equal(await guesser.next(), "ERR wrong password (2 of 3 tries)");
    assert.equal(
      await guesser.next(),
      "ERR wrong password (3 of 3 tries): address ignored for 60 s",
    );
    // From another port of the same address, even the right password is not checked now.
    using again = new TestPeer("127.0.0.3");
    await again.send(server.addr, `/pass ${SECRET}`);
    assert.match(
      await again.next(),
      /^ERR too many wrong passwords from 127\.0\.0\.3: try again in (59|60) s$/,
    );
    await log.waitFor(
      new RegExp(`^refused 127\\.0\\.0\\.3:${again.addr.port}: too many wrong passwords from `),
    );
    assert.equal(server.peerCount, 1);
    assert.deepEqual(await alice.received(), [], "the room heard nothing of it");
    // Another address is not locked.
    using carol = new TestPeer("127.0.0.4");
    await carol.send(server.addr, `/pass ${SECRET}`);
    assert.equal(await carol.next(), say.welcome("user2"));
    assertNoSecretIn(log.lines);
  });
});

// ---- the scripts

/** Reads a server's log until `match`, keeping every line in `all`. */
async function logUntil(
  reader: LineReader,
  all: string[],
  match: (line: string) => boolean,
): Promise<string> {
  while (true) {
    const line = await reader.line();
    if (line === null) throw new Error(`the log ended before the line; it had: ${all.join("\n")}`);
    all.push(line);
    if (match(line)) return line;
  }
}

/** Stops a server script and returns the rest of its log. */
async function stop(server: Script): Promise<string[]> {
  server.child.kill("SIGTERM");
  await server.stdin.close().catch(() => {});
  const [rest] = await Promise.all([server.stdout.rest(), server.stderr.rest()]);
  await server.child.status;
  return rest;
}

Deno.test({
  name: "client.ts --password-file gives the password before /nick, end to end with server.ts",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using dir = await TempDir.make();
    const file = await dir.file("room.pass", `${SECRET}\r\nnot the password\n`);
    const read = ["--allow-net", `--allow-read=${file}`];
    const server = runScript(
      "server.ts",
      ["--port", "0", "--no-console", "--password-file", file],
      { permissions: read, serverLog: true },
    );
    const log: string[] = [];
    try {
      const listening = await logUntil(server.stdout, log, (l) => l.startsWith("listening on "));
      const port = Number(/:(\d+) \(/.exec(listening)![1]);
      using observer = new TestClient(await Deno.connect({ hostname: "127.0.0.1", port }));
      assert.equal(await observer.line(), say.passwordNeeded);
      await observer.send(`/pass ${SECRET}\n`);
      assert.equal(await observer.line(), say.welcome("user1"));

      const client = runScript(
        "client.ts",
        ["--port", String(port), "--password-file", file, "--name", "alice"],
        { permissions: read },
      );
      await client.stdin.write(bytes("hello 你好\n"));
      assert.equal(await observer.line(), "* user2 joined");
      assert.equal(await observer.line(), "* user2 is now alice");
      assert.equal(await observer.line(), "<alice> hello 你好");
      await client.stdin.close();
      assert.equal(await observer.line(), "* alice left (eof)");
      const [status, stdout, stderr] = await Promise.all([
        client.child.status,
        client.stdout.rest(),
        client.stderr.rest(),
      ]);
      assert.equal(status.code, 0, stderr.join("\n"));
      assert.deepEqual(stdout, [say.passwordNeeded, say.welcome("user2"), "* user2 is now alice"]);
      assertNoSecretIn([...stdout, ...stderr]);
      await logUntil(server.stdout, log, (l) => /^closed 127\.0\.0\.1:\d+ id=2 alice/.test(l));
    } finally {
      log.push(...await stop(server));
    }
    assert.ok(
      log.some((line) => /^password accepted from 127\.0\.0\.1:\d+ id=2 user2$/.test(line)),
    );
    assertNoSecretIn(log);
  },
});

Deno.test({
  name: "an nc user types /pass PASSWORD and is in the room",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using server = new TestServer({ password: new Password(SECRET) });
    using alice = await server.connect();
    await alice.send(`/pass ${SECRET}\n`);
    assert.equal(await alice.until(/^\* welcome/), say.welcome("user1"));
    // -N: our end of input is our FIN, so nc ends once the server closes.
    const nc = runProgram("nc", ["-N", "127.0.0.1", String(server.port)]);
    assert.equal(await nc.stdout.line(), say.passwordNeeded);
    await nc.stdin.write(bytes("hello?\n"));
    assert.equal(await nc.stdout.line(), say.passwordFirst);
    await nc.stdin.write(bytes(`/pass ${SECRET}\nhi from nc\n`));
    assert.equal(await nc.stdout.line(), say.welcome("user2"));
    assert.equal(await alice.line(), "* user2 joined");
    assert.equal(await alice.line(), "<user2> hi from nc");
    await nc.stdin.close();
    assert.equal(await alice.line(), "* user2 left (eof)");
    const [status, rest] = await Promise.all([nc.child.status, nc.stdout.rest()]);
    await nc.stderr.rest();
    assert.equal(status.code, 0);
    assert.deepEqual(rest, []);
    assertNoSecretIn(server.logs);
  },
});

/** Runs a script that should fail before it serves or connects; its exit code and stderr. */
async function runFailing(script: string, args: string[], permissions?: string[]) {
  const child = runScript(script, args, { permissions });
  await child.stdin.close();
  const [status, stderr] = await Promise.all([
    child.child.status,
    child.stderr.rest(),
    child.stdout.rest(),
  ]);
  return { code: status.code, stderr };
}

Deno.test({
  name: "every script names the --allow-read=FILE it needs to read --password-file",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using dir = await TempDir.make();
    const file = await dir.file("room.pass", `${SECRET}\n`);
    for (const script of ["server.ts", "udp_server.ts", "client.ts"]) {
      const result = await runFailing(script, ["--port", "9", "--password-file", file]);
      assert.deepEqual(result.stderr, [
        `${script}: cannot read --password-file ${file}: no permission to read it: ` +
        `run it with --allow-read=${file}`,
      ]);
      assert.equal(result.code, 1);
    }
  },
});

Deno.test({
  name: "the servers refuse an empty password file (exit 1) and a password in echo mode (exit 2)",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using dir = await TempDir.make();
    const empty = await dir.file("empty.pass", "\n");
    const good = await dir.file("room.pass", `${SECRET}\n`);
    for (const script of ["server.ts", "udp_server.ts"]) {
      const read = ["--allow-net", `--allow-read=${dir.path}`];
      const bad = await runFailing(script, ["--port", "0", "--password-file", empty], read);
      assert.deepEqual(bad.stderr, [
        `${script}: cannot use --password-file ${empty}: its first line, the password, is empty`,
      ]);
      assert.equal(bad.code, 1);
      const echo = await runFailing(
        script,
        ["--port", "0", "--mode", "echo", "--password-file", good],
        read,
      );
      assert.deepEqual(echo.stderr, [
        `${script}: --password-file needs --mode chat: an echo service has no room to guard ` +
        "(see --help)",
      ]);
      assert.equal(echo.code, 2);
    }
  },
});
