import assert from "node:assert/strict";
import {
  checkDatagram,
  DATAGRAM_TOO_LARGE,
  ONE_LINE_PER_DATAGRAM,
  startUdpServer,
  type UdpServer,
} from "../udp_server.ts";
import { say } from "../protocol.ts";
import { NEEDS_SPAWN, runScript, startScriptServer, within } from "./util.ts";
import { filled, TestPeer } from "./udp_util.ts";
import { withUdpServer as withServer } from "./bound_util.ts";

const encoder = new TextEncoder();

/** A peer that joins the chat as `name` and reads its welcome. */
async function joinAs(server: UdpServer, name: string): Promise<TestPeer> {
  const peer = new TestPeer();
  await peer.send(server.addr, `/nick ${name}\n`);
  assert.equal(await peer.next(), say.welcome(name));
  return peer;
}

// ---- checkDatagram: the precise limit

Deno.test("checkDatagram() draws the 256-byte line exactly", () => {
  const cases: [string, Uint8Array, string | number][] = [
    ["empty datagram", filled(0), 0],
    ["255 bytes, no newline", filled(255), 255],
    ["255 bytes and \\n (256 in all)", new Uint8Array([...filled(255), 0x0a]), 255],
    ["254 bytes and \\r\\n (256 in all)", new Uint8Array([...filled(254), 0x0d, 0x0a]), 254],
    ["256 bytes without \\n", filled(256), say.tooLong],
    ["255 bytes and \\r without \\n", new Uint8Array([...filled(255), 0x0d]), say.tooLong],
    ["257 bytes ending in \\n", new Uint8Array([...filled(256), 0x0a]), DATAGRAM_TOO_LARGE],
    ["65507 bytes", filled(65_507), DATAGRAM_TOO_LARGE],
    ["a lone continuation byte", new Uint8Array([0x61, 0x80]), say.invalidUtf8],
    ["Chinese text cut inside a character", encoder.encode("你好").subarray(0, 4), say.invalidUtf8],
  ];
  for (const [label, datagram, expected] of cases) {
    const checked = checkDatagram(datagram);
    const actual = "error" in checked ? checked.error : checked.text.length;
    assert.equal(actual, expected, label);
  }
});

// ---- echo mode

Deno.test("echo mode sends Chinese text back unchanged, with or without its newline", async () => {
  await withServer({ mode: "echo" }, async (server) => {
    using peer = new TestPeer();
    for (const text of ["你好，世界\n", "你好，世界", "", "tab\tand \u001b[31m stay in echo\n"]) {
      await peer.send(server.addr, text);
      const [bytes] = await peer.receiveFrom();
      assert.deepEqual(bytes, encoder.encode(text));
    }
  });
});

Deno.test("echo mode answers an oversize datagram with the error, never with a piece", async () => {
  await withServer({ mode: "echo" }, async (server, log) => {
    using peer = new TestPeer();
    for (const size of [257, 1000, 65_507]) {
      await peer.send(server.addr, filled(size));
      assert.equal(await peer.next(), DATAGRAM_TOO_LARGE, `${size} bytes`);
    }
    await peer.send(server.addr, filled(256));
    assert.equal(await peer.next(), say.tooLong, "256 bytes without a newline: a line of 256");
    const largest = new Uint8Array([...filled(255), 0x0a]);
    await peer.send(server.addr, largest);
    assert.deepEqual((await peer.receiveFrom())[0], largest);
    assert.ok(log.lines.some((line) => line.includes("(65507 bytes)")), "the refusal is logged");
  });
});

Deno.test("echo mode answers invalid UTF-8 with the error", async () => {
  await withServer({ mode: "echo" }, async (server) => {
    using peer = new TestPeer();
    await peer.send(server.addr, new Uint8Array([0xff, 0xfe, 0x0a]));
    assert.equal(await peer.next(), say.invalidUtf8);
    await peer.send(server.addr, new Uint8Array([0xed, 0xa0, 0x80])); // a UTF-16 surrogate
    assert.equal(await peer.next(), say.invalidUtf8);
    assert.equal(server.peerCount, 0, "echo mode keeps no table");
  });
});

Deno.test("echo mode logs each datagram's source address and port", async () => {
  await withServer({ mode: "echo" }, async (server, log) => {
    using peer = new TestPeer();
    await peer.send(server.addr, "hi\n");
    await peer.next();
    assert.ok(
      log.lines.includes(`datagram from 127.0.0.1:${peer.addr.port}: 3 bytes`),
      log.lines.join("\n"),
    );
  });
});

Deno.test("echo mode tells apart two sources on one port, from two addresses", async () => {
  await withServer({ mode: "echo" }, async (server, log) => {
    using first = new TestPeer("127.0.0.1");
    using second = new TestPeer("127.0.0.2", first.addr.port);
    for (let round = 0; round < 3; round++) {
      for (const [peer, host] of [[first, "127.0.0.1"], [second, "127.0.0.2"]] as const) {
        const text = `from ${host} ${round}`;
        await peer.send(server.addr, text);
        assert.equal(await peer.next(), text);
        const line = `datagram from ${host}:${first.addr.port}: ${text.length} bytes`;
        await within(5000, line, log.waitFor(line));
      }
    }
  });
});

// ---- chat mode

Deno.test("chat mode relays Chinese text to every other peer as <name> text", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "鲍勃");
    assert.equal(await alice.next(), say.joined("鲍勃"));
    await alice.send(server.addr, "你好，鲍勃\n");
    assert.equal(await bob.next(), "<alice> 你好，鲍勃");
    await bob.send(server.addr, "收到"); // no newline: just as good
    assert.equal(await alice.next(), "<鲍勃> 收到");
    assert.equal(server.peerCount, 2);
  });
});

Deno.test("chat mode names a newcomer user<id> until it sends /nick", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using guest = new TestPeer();
    await guest.send(server.addr, "hello\n");
    const welcome = await guest.next();
    const name = /you are (\S+)/.exec(welcome)![1];
    assert.match(name, /^user\d+$/);
    assert.equal(await alice.next(), say.joined(name));
    assert.equal(await alice.next(), `<${name}> hello`);
    await guest.send(server.addr, "/nick carol\n");
    assert.equal(await alice.next(), say.renamed(name, "carol"));
    assert.equal(await guest.next(), say.renamed(name, "carol"));
  });
});

Deno.test("chat mode answers /list, /help, a taken name and an unknown command", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    await bob.send(server.addr, "/list\n");
    assert.match(
      await bob.next(),
      new RegExp(`^\\* id=1 name=alice addr=127\\.0\\.0\\.1:${alice.addr.port} age=0 idle=0$`),
    );
    assert.match(await bob.next(), /^\* id=2 name=bob /);
    assert.equal(await bob.next(), say.count(2, "peer"));
    await bob.send(server.addr, "/help\n");
    for (const line of say.help) assert.equal(await bob.next(), line);
    await bob.send(server.addr, "/nick ALICE\n");
    assert.equal(await bob.next(), say.nameTaken("ALICE"));
    await bob.send(server.addr, "/dance\n");
    assert.equal(await bob.next(), say.unknownCommand("/dance"));
  });
});

Deno.test("a first /nick with a taken name joins under user<id> and is told why", async () => {
  await withServer({}, async (server) => {
    using _alice = await joinAs(server, "alice");
    using other = new TestPeer();
    await other.send(server.addr, "/nick alice\n");
    assert.match(await other.next(), /you are user\d+/);
    assert.equal(await other.next(), say.nameTaken("alice"));
  });
});

Deno.test("a first /nick with a decomposed name joins under it, composed, with no rename", async () => {
  await withServer({}, async (server) => {
    using peer = new TestPeer();
    await peer.send(server.addr, "/nick Jose\u0301\n");
    assert.equal(await peer.next(), say.welcome("Jos\u00e9"));
    await peer.send(server.addr, "/quit\n");
    assert.equal(await peer.next(), say.bye, "nothing came between the welcome and the bye");
  });
});

Deno.test("a first /nick is answered as over TCP: reserved, invalid or taken, even its own user<id>", async () => {
  await withServer({}, async (server) => {
    using _alice = await joinAs(server, "alice");
    // The newcomer will be id 2: "/nick user2" would name it what it is given anyway.
    for (
      const [nick, answer] of [
        ["user2", "ERR name reserved: user2"],
        ["USER3", "ERR name reserved: USER3"],
        ["server", "ERR name reserved: server"],
        ["a b", "ERR invalid name: use 1-32 letters, digits, _ or -"],
        ["ALICE", say.nameTaken("ALICE")],
      ]
    ) {
      using peer = new TestPeer();
      await peer.send(server.addr, `/nick ${nick}\n`);
      assert.match(await peer.next(), /^\* welcome, you are user\d+ /);
      assert.equal(await peer.next(), answer, `/nick ${nick}`);
      await peer.send(server.addr, "/quit\n");
      assert.equal(await peer.next(), say.bye);
    }
  });
});

Deno.test("chat mode never relays an oversize, too long, invalid or two-line datagram", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    await alice.next(); // * bob joined
    const bad: [Uint8Array, string][] = [
      [filled(257), DATAGRAM_TOO_LARGE],
      [filled(1000), DATAGRAM_TOO_LARGE],
      [filled(65_507), DATAGRAM_TOO_LARGE],
      [filled(256), say.tooLong],
      [new Uint8Array([0x68, 0xc3, 0x28, 0x0a]), say.invalidUtf8],
      [encoder.encode("one\ntwo\n"), ONE_LINE_PER_DATAGRAM],
    ];
    for (const [datagram, error] of bad) {
      await alice.send(server.addr, datagram);
      assert.equal(await alice.next(), error);
    }
    // The server handles datagrams in order, so bob's next relay is the marker
    // if none of the bad ones reached him.
    await alice.send(server.addr, "marker\n");
    assert.equal(await bob.next(), "<alice> marker");
  });
});

Deno.test("chat mode strips control characters before relaying", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    await alice.send(server.addr, "\u001b[2Jred\u0007 \u009b1m你好\tok\r\n");
    assert.equal(await bob.next(), "<alice> red 你好\tok");
  });
});

Deno.test("a 256-byte datagram ending in a newline is relayed whole", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    const text = "你".repeat(85); // 255 bytes
    await alice.send(server.addr, text + "\n");
    assert.equal(await bob.next(), `<alice> ${text}`);
  });
});

Deno.test("a silent peer leaves after the peer timeout, announced as (idle timeout), as over TCP", async () => {
  await withServer({ peerTimeoutMs: 200 }, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    // Bob keeps talking (each answer prompts the next question) while alice says nothing.
    let text = "";
    while (text !== say.left("alice", "idle timeout")) {
      await bob.send(server.addr, "/ping\n");
      text = await bob.next();
    }
    assert.equal(await alice.until((t) => t === say.idle), say.idle);
    assert.equal(server.peerCount, 1);
    // What alice sends next makes her a newcomer again.
    await alice.send(server.addr, "/nick alice\n");
    assert.equal(await alice.next(), say.welcome("alice"));
  });
});

Deno.test("receiving does not keep a peer: only what it sends does", async () => {
  await withServer({ peerTimeoutMs: 200 }, async (server, log) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    // Bob talks to alice without pause; alice only receives, and still times out.
    let text = "";
    while (text !== say.left("alice", "idle timeout")) {
      await bob.send(server.addr, "/ping\n");
      text = await bob.next();
    }
    assert.ok(log.lines.some((l) => /^left 127\.0\.0\.1:\d+ id=1 alice \(idle timeout\)$/.test(l)));
    alice.socket.close();
  });
});

Deno.test("the peer table has a bound: a newcomer beyond it is told the server is full", async () => {
  await withServer({ maxPeers: 2 }, async (server) => {
    using alice = await joinAs(server, "alice");
    using _bob = await joinAs(server, "bob");
    using carol = new TestPeer();
    await carol.send(server.addr, "/nick carol\n");
    assert.equal(await carol.next(), say.serverFull(2, "peer"));
    assert.equal(server.peerCount, 2);
    assert.equal(await alice.next(), say.joined("bob"));
    await alice.send(server.addr, "/quit\n");
    assert.equal(await alice.next(), say.bye);
    assert.equal(server.peerCount, 1);
    await carol.send(server.addr, "/nick carol\n");
    assert.equal(await carol.next(), say.welcome("carol"));
  });
});

Deno.test("/quit takes a peer out and tells the others", async () => {
  await withServer({}, async (server) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    await alice.next(); // * bob joined
    await bob.send(server.addr, "/quit\n");
    assert.equal(await bob.next(), say.bye);
    assert.equal(await alice.next(), say.left("bob", "quit"));
  });
});

Deno.test("on ::, an IPv4 peer is one peer at 127.0.0.1:PORT beside an IPv6 one at [::1]:PORT", async () => {
  await withServer({ host: "::" }, async (server, log) => {
    const port = server.addr.port;
    using alice = new TestPeer(); // on 127.0.0.1: Deno tells the server ::ffff:127.0.0.1
    const bob = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
    try {
      const buffer = new Uint8Array(65_535);
      const bobNext = async () => {
        const [datagram] = await within(5000, "a datagram for bob", bob.receive(buffer));
        return new TextDecoder().decode(datagram).replace(/\n$/, "");
      };
      const aliceAt = `127.0.0.1:${alice.addr.port}`;
      const bobAt = `[::1]:${(bob.addr as Deno.NetAddr).port}`;
      const toServer4: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
      const toServer6: Deno.NetAddr = { transport: "udp", hostname: "::1", port };

      await alice.send(toServer4, "/nick alice\n");
      assert.equal(await alice.next(), say.welcome("alice"));
      await bob.send(encoder.encode("/nick bob\n"), toServer6);
      assert.equal(await bobNext(), say.welcome("bob"));
      assert.equal(await alice.next(), say.joined("bob"));
      // Each datagram of alice's finds her in the table: she stays one peer.
      for (const text of ["你好", "再见"]) {
        await alice.send(toServer4, text);
        assert.equal(await bobNext(), say.relay("alice", text));
      }
      assert.equal(server.peerCount, 2);
      await bob.send(encoder.encode("/list"), toServer6);
      const listed = (id: number, name: string, at: string) =>
        new RegExp(`^\\* id=${id} name=${name} addr=${RegExp.escape(at)} age=\\d+ idle=\\d+$`);
      assert.match(await bobNext(), listed(1, "alice", aliceAt));
      assert.match(await bobNext(), listed(2, "bob", bobAt));
      assert.equal(await bobNext(), say.count(2, "peer"));
      await alice.send(toServer4, "/quit");
      assert.equal(await alice.next(), say.bye);
      assert.equal(await bobNext(), say.left("alice", "quit"));
      assert.equal(server.peerCount, 1);

      const about = (at: string) => log.lines.filter((line) => line.includes(at));
      assert.deepEqual(about(aliceAt), [
        `datagram from ${aliceAt}: 12 bytes`,
        `joined ${aliceAt} id=1 alice`,
        `datagram from ${aliceAt}: 6 bytes`,
        `datagram from ${aliceAt}: 6 bytes`,
        `datagram from ${aliceAt}: 5 bytes`,
        `left ${aliceAt} id=1 alice (quit)`,
      ]);
      assert.deepEqual(about(bobAt), [
        `datagram from ${bobAt}: 10 bytes`,
        `joined ${bobAt} id=2 bob`,
        `datagram from ${bobAt}: 5 bytes`,
      ]);
      assert.deepEqual(log.lines.filter((line) => line.includes("::ffff:")), []);
    } finally {
      bob.close();
    }
  });
});

Deno.test("console lines go to every peer as <server> text; shutdown tells them", async () => {
  const server = startUdpServer({ host: "127.0.0.1", port: 0, log: () => {} });
  using alice = await joinAs(server, "alice");
  using bob = await joinAs(server, "bob");
  await alice.next(); // * bob joined
  server.console("维护 in 5 minutes");
  assert.equal(await alice.next(), "<server> 维护 in 5 minutes");
  assert.equal(await bob.next(), "<server> 维护 in 5 minutes");
  await server.shutdown();
  await server.finished;
  assert.equal(await alice.next(), say.shuttingDown);
  assert.equal(await bob.next(), say.shuttingDown);
});

Deno.test("console /list shows the peers, /kick ID or NAME forgets one, /help lists them", async () => {
  await withServer({}, async (server, log) => {
    using alice = await joinAs(server, "alice");
    using bob = await joinAs(server, "bob");
    await alice.next(); // * bob joined
    server.console("/list");
    assert.ok(log.lines.includes(say.count(2, "peer")));
    server.console("/kick 2");
    assert.equal(await bob.next(), say.kicked);
    assert.equal(await alice.next(), say.left("bob", "kicked"));
    assert.equal(server.peerCount, 1);
    server.console("/kick 99");
    assert.equal(log.lines.at(-1), "no peer with id 99 (see /list)");
    server.console("/kick A1ICE"); // the same name as alice to nameKey
    assert.equal(await alice.next(), say.kicked);
    assert.equal(server.peerCount, 0);
    server.console("/kick alice");
    assert.equal(log.lines.at(-1), "no peer named alice (see /list)");
    server.console("/help");
    assert.ok(log.lines.some((line) => line.startsWith("* /kick ID or NAME  forget one")));
  });
});

Deno.test("no datagram of any size or content crashes the server or passes the bound", async () => {
  await withServer({ maxPeers: 3 }, async (server, log) => {
    using watcher = await joinAs(server, "watcher");
    const senders = Array.from({ length: 5 }, () => new TestPeer());
    try {
      const sizes = [...Array(300).keys(), 1000, 4096, 65_507];
      for (const [i, size] of sizes.entries()) {
        const sender = senders[size % senders.length];
        await sender.send(
          server.addr,
          crypto.getRandomValues(new Uint8Array(size)).map((b) =>
            // Mostly "/" and "\n" mixed in, so commands and line breaks get tried too.
            b % 17 === 0 ? 0x2f : b % 13 === 0 ? 0x0a : b
          ),
        );
        // Not every datagram is answered (a stranger's, past the budget, is not),
        // but each is logged on arrival, once the one before is handled.
        await within(5000, `datagram ${i}`, log.waitForCount(/^datagram from /, i + 2));
        assert.ok(server.peerCount <= 3);
      }
      await watcher.send(server.addr, "/list\n");
      assert.match(
        await watcher.until((t) => t.startsWith("* ") && t.endsWith("peers")),
        /^\* [1-3] peers$/,
      );
    } finally {
      for (const sender of senders) sender[Symbol.dispose]();
    }
  });
});

// ---- the script

Deno.test({
  name: "udp_server.ts prints where it listens, echoes, and exits 0 on SIGTERM",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startScriptServer("udp_server.ts", ["--mode", "echo"]);
    using peer = new TestPeer();
    await peer.send({ transport: "udp", hostname: "127.0.0.1", port: server.port }, "你好\n");
    assert.equal(await peer.next(), "你好");
    await server.stdout.until((line) => line.startsWith("datagram from 127.0.0.1:"));
    server.child.kill("SIGTERM");
    assert.equal((await server.child.status).code, 0);
    await server.stdin.close().catch(() => {});
    await Promise.all([server.stdout.rest(), server.stderr.rest()]);
  },
});

Deno.test({
  name: "udp_server.ts tells chat peers the server is shutting down on SIGINT",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startScriptServer("udp_server.ts", []);
    const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.port };
    using peer = new TestPeer();
    await peer.send(to, "/nick alice\n");
    assert.equal(await peer.next(), say.welcome("alice"));
    server.child.kill("SIGINT");
    assert.equal(await peer.next(), say.shuttingDown);
    assert.equal((await server.child.status).code, 0);
    await server.stdin.close().catch(() => {});
    await Promise.all([server.stdout.rest(), server.stderr.rest()]);
  },
});

Deno.test({
  name: "udp_server.ts answers --help, a bad flag and a port in use with one line each",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const help = runScript("udp_server.ts", ["--help"]);
    const helpLines = await help.stdout.rest();
    assert.equal((await help.child.status).code, 0);
    for (const flag of ["--host", "--port", "--mode", "--peer-timeout", "--max-peers"]) {
      assert.ok(helpLines.some((line) => line.trimStart().startsWith(flag)), flag);
    }
    await help.stderr.rest();

    const bad = runScript("udp_server.ts", ["--peer-timeout", "soon"]);
    const badLines = await bad.stderr.rest();
    assert.equal((await bad.child.status).code, 2);
    assert.deepEqual(badLines, [
      'udp_server.ts: Cannot parse --peer-timeout "soon": must be seconds above 0, at most 86400 (see --help)',
    ]);
    await bad.stdout.rest();

    using holder = new TestPeer();
    const busy = runScript("udp_server.ts", ["--port", String(holder.addr.port)]);
    const busyLines = await busy.stderr.rest();
    assert.equal((await busy.child.status).code, 1);
    assert.deepEqual(busyLines, [
      `udp_server.ts: cannot listen on 127.0.0.1:${holder.addr.port}: address already in use`,
    ]);
    await busy.stdout.rest();

    const denied = runScript("udp_server.ts", ["--port", "0"], { permissions: [] });
    const deniedLines = await denied.stderr.rest();
    assert.equal((await denied.child.status).code, 1);
    assert.match(deniedLines.join("\n"), /^udp_server\.ts: no network permission/);
    await denied.stdout.rest();
  },
});

Deno.test("chat: bad datagrams from a stranger are answered within the budget; a member's always", async () => {
  await withServer({}, async (server, log) => {
    using stranger = new TestPeer();
    const invalid = new Uint8Array([0xff]); // not UTF-8: 1 byte in, an 18-byte ERR out
    for (let i = 0; i < 30; i++) await stranger.send(server.addr, invalid);
    const refusals = await within(5000, "30 refusals logged", log.waitForCount(/^refused /, 30));
    const unanswered = refusals.filter((line) => line.includes("(not answered: over 10 a second)"));
    // The budget is 10 a second: 30 in well under two seconds leave at least 10 unanswered.
    assert.ok(unanswered.length >= 10, refusals.join("\n"));
    using member = await joinAs(server, "alice");
    for (let i = 0; i < 15; i++) await member.send(server.addr, invalid);
    for (let i = 0; i < 15; i++) assert.equal(await member.next(), say.invalidUtf8);
  });
});
