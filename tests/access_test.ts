/**
 * Tests of access.ts (--allow, --deny, --max-per-address) and of both servers
 * enforcing it: real sockets on loopback, each "host" a different 127.x
 * source address (tests/bound_util.ts), and the scripts' flags.
 */
import assert from "node:assert/strict";
import net from "node:net";
import {
  AccessControl,
  addressKey,
  type AddressRange,
  AnswerBudget,
  formatIp,
  inRange,
  parseAddressRange,
  parseAddressRanges,
  parseIp,
  STRANGER_ANSWERS_PER_SECOND,
} from "../access.ts";
import { UsageError } from "../cli.ts";
import { say } from "../protocol.ts";
import { NEEDS_SPAWN, runScript, TestServer, within } from "./util.ts";
import { BoundClient, withUdpServer } from "./bound_util.ts";
import { TestPeer } from "./udp_util.ts";

const range = (text: string) => parseAddressRange("--allow", text);

// ---- reading addresses and ranges

Deno.test("parseAddressRange() reads addresses and CIDR ranges of both families", () => {
  const cases: [string, AddressRange][] = [
    ["127.0.0.1", { version: 4, value: 0x7f000001n, prefix: 32 }],
    ["127.0.0.0/8", { version: 4, value: 0x7f000000n, prefix: 8 }],
    ["192.0.2.128/25", { version: 4, value: 0xc0000280n, prefix: 25 }],
    ["::1", { version: 6, value: 1n, prefix: 128 }],
    ["2001:db8::/32", { version: 6, value: 0x20010db8n << 96n, prefix: 32 }],
    ["2001:DB8:0:0:0:0:0:0/32", { version: 6, value: 0x20010db8n << 96n, prefix: 32 }],
    ["fe80::/10", { version: 6, value: 0xfe80n << 112n, prefix: 10 }],
    // RFC 4291 section 2.2, form 3: the last 32 bits in dotted decimal.
    ["64:ff9b::192.0.2.1", { version: 6, value: (0x64ff9bn << 96n) | 0xc0000201n, prefix: 128 }],
  ];
  for (const [text, expected] of cases) assert.deepEqual(range(text), expected, text);
});

Deno.test("parseAddressRange() takes the edges /0, /32 and /128", () => {
  assert.deepEqual(range("0.0.0.0/0"), { version: 4, value: 0n, prefix: 0 });
  assert.deepEqual(range("::/0"), { version: 6, value: 0n, prefix: 0 });
  assert.deepEqual(range("10.1.2.3/32"), { version: 4, value: 0x0a010203n, prefix: 32 });
  assert.deepEqual(range("2001:db8::7/128"), {
    version: 6,
    value: (0x20010db8n << 96n) | 7n,
    prefix: 128,
  });
  // /0 takes every address of its family and none of the other.
  assert.ok(inRange(parseIp("255.255.255.255")!, range("0.0.0.0/0")));
  assert.ok(inRange(parseIp("ffff::ffff")!, range("::/0")));
  assert.ok(!inRange(parseIp("127.0.0.1")!, range("::/0")));
  assert.ok(!inRange(parseIp("::1")!, range("0.0.0.0/0")));
  // /32 and /128 take one address.
  assert.ok(inRange(parseIp("10.1.2.3")!, range("10.1.2.3/32")));
  assert.ok(!inRange(parseIp("10.1.2.4")!, range("10.1.2.3/32")));
  assert.ok(!inRange(parseIp("2001:db8::6")!, range("2001:db8::7/128")));
});

Deno.test("parseAddressRange() reads an IPv4-mapped range as the IPv4 range it maps", () => {
  assert.deepEqual(range("::ffff:127.0.0.2"), { version: 4, value: 0x7f000002n, prefix: 32 });
  assert.deepEqual(range("::ffff:10.0.0.0/104"), { version: 4, value: 0x0a000000n, prefix: 8 });
  assert.deepEqual(range("::ffff:7f00:0/104"), { version: 4, value: 0x7f000000n, prefix: 8 });
  assert.deepEqual(range("::ffff:0.0.0.0/96"), { version: 4, value: 0n, prefix: 0 });
  // Wider than the mapped block: an IPv6 range, which no IPv4 peer is in.
  assert.deepEqual(range("::/80"), { version: 6, value: 0n, prefix: 80 });
  assert.ok(!inRange(parseIp("::ffff:127.0.0.2")!, range("::/80")));
});

Deno.test("parseAddressRange() refuses bad values in one line naming the flag and the value", () => {
  const notV4 = "not an IPv4 address (give an address or a CIDR range, as in 192.0.2.0/24 or " +
    "2001:db8::/32; host names are not taken)";
  const notV6 = notV4.replace("IPv4", "IPv6");
  const cases: [string, string][] = [
    ["", "give an IPv4 or IPv6 address or a CIDR range"],
    ["localhost", notV4],
    ["256.0.0.1", notV4],
    ["1.2.3", notV4],
    ["01.2.3.4", notV4], // octal to some readers
    ["1.2.3.4.5", notV4],
    [" 127.0.0.1", notV4],
    ["1::2::3", notV6],
    ["1:2:3:4:5:6:7:8:9", notV6],
    ["1:2:3:4:5:6:7", notV6],
    ["1:2:3:4:5:6:7:8::", notV6], // "::" must stand for at least one group
    ["12345::", notV6],
    [":1::", notV6],
    ["::ffff:1.2.3", notV6],
    ["::1.2.3.4:5", notV6],
    ["fe80::1%eth0", "a zone (%...) names a link, not who may connect: leave it out"],
    ["10.0.0.0/33", "the prefix after / must be a whole number from 0 to 32"],
    ["::/129", "the prefix after / must be a whole number from 0 to 128"],
    ["10.0.0.0/", "the prefix after / must be a whole number from 0 to 32"],
    ["10.0.0.0/-1", "the prefix after / must be a whole number from 0 to 32"],
    ["10.0.0.0/08", "the prefix after / must be a whole number from 0 to 32"],
    ["10.0.0.0/8/8", "the prefix after / must be a whole number from 0 to 32"],
    ["10.0.0.0/ 8", "the prefix after / must be a whole number from 0 to 32"],
    ["10.1.2.3/8", "bits are set past the /8 prefix: did you mean 10.0.0.0/8?"],
    ["127.0.0.1/0", "bits are set past the /0 prefix: did you mean 0.0.0.0/0?"],
    ["2001:db8::1/32", "bits are set past the /32 prefix: did you mean 2001:db8::/32?"],
    ["::ffff:10.1.0.0/104", "bits are set past the /104 prefix: did you mean ::ffff:10.0.0.0/104?"],
  ];
  for (const [text, why] of cases) {
    assert.throws(
      () => parseAddressRange("--deny", text),
      (error: Error) => {
        assert.ok(error instanceof UsageError, text);
        assert.equal(error.message, `Cannot parse --deny "${text}": ${why}`);
        assert.ok(!error.message.includes("\n"));
        return true;
      },
    );
  }
});

Deno.test("parseIp() agrees with node:net's isIP on what is an address", () => {
  // Deliberate differences, left out here: node takes a zone ("fe80::1%eth0"),
  // which a peer's address may carry (peerIp() drops it) but a rule may not.
  const corpus = [
    "0.0.0.0",
    "255.255.255.255",
    "127.0.0.1",
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.02.3.4",
    "1.2.3.4 ",
    "a.b.c.d",
    "::",
    "::1",
    "1::",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    ":::",
    "1:::2",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "12345::1",
    "g::1",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::ffff:1.2.3.256",
    "::ffff:1.2.3",
    "1.2.3.4::",
    "2001:DB8::A",
    "",
    ":",
  ];
  for (const text of corpus) {
    assert.equal(parseIp(text) !== undefined, net.isIP(text) !== 0, JSON.stringify(text));
  }
});

Deno.test("inRange() agrees with node:net's BlockList, IPv4-mapped peers included", () => {
  const rules = [
    "127.0.0.0/8",
    "127.0.0.2",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "192.0.2.128/25",
    "::1",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "::/0",
    "fe80::/10",
  ];
  const peers = [
    "127.0.0.1",
    "127.0.0.2",
    "127.255.255.255",
    "128.0.0.0",
    "10.20.30.40",
    "192.0.2.127",
    "192.0.2.128",
    "::ffff:127.0.0.2",
    "::ffff:10.0.0.1",
    "::1",
    "::2",
    "2001:db8::1",
    "2001:db8:1:2::3",
    "2001:db9::",
    "fe80::1",
    "febf:ffff::",
    "fec0::",
  ];
  for (const rule of rules) {
    const parsed = range(rule);
    const list = new net.BlockList();
    const [network, prefix] = [formatIp(parsed), parsed.prefix];
    list.addSubnet(network, prefix, parsed.version === 4 ? "ipv4" : "ipv6");
    for (const peer of peers) {
      const ip = parseIp(peer)!;
      // BlockList reads a mapped address as IPv6 text and matches it to IPv4 rules.
      const family = peer.includes(":") ? "ipv6" : "ipv4";
      // BlockList puts an IPv4 peer in ::/0 (it maps it); a mapped peer is IPv4 here.
      if (rule === "::/0" && ip.version === 4) continue;
      assert.equal(inRange(ip, parsed), list.check(peer, family), `${peer} in ${rule}`);
    }
  }
  // The one difference, on purpose: ::/0 is every IPv6 peer, not IPv4 ones.
  assert.ok(!inRange(parseIp("::ffff:127.0.0.2")!, range("::/0")));
});

Deno.test("formatIp() writes IPv6 as RFC 5952 recommends", () => {
  const cases: [string, string][] = [
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // the first of two equal runs
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero group is not shortened
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longest run
    ["0:0:0:0:0:0:0:0", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
  ];
  for (const [text, expected] of cases) assert.equal(formatIp(parseIp(text)!), expected, text);
  // An IPv4-mapped address keeps its dotted form (RFC 5952, section 5).
  assert.equal(formatIp({ version: 6, value: 0xffff7f000002n }), "::ffff:127.0.0.2");
  assert.equal(formatIp(parseIp("192.0.2.1")!), "192.0.2.1");
});

Deno.test("parseAddressRanges() takes repeated flags and comma-separated lists, as ncat does", () => {
  const ranges = parseAddressRanges("--allow", ["127.0.0.1,::1", "10.0.0.0/8, 2001:db8::/32"]);
  assert.deepEqual(ranges.map((r) => `${formatIp(r)}/${r.prefix}`), [
    "127.0.0.1/32",
    "::1/128",
    "10.0.0.0/8",
    "2001:db8::/32",
  ]);
  assert.throws(
    () => parseAddressRanges("--allow", ["127.0.0.1,"]),
    /Cannot parse --allow "": give an IPv4 or IPv6 address/,
  );
});

// ---- the rules and the counts

Deno.test("AccessControl lets in only --allow's addresses, and --deny wins over --allow", () => {
  const ranges = (...texts: string[]) => texts.map(range);
  const open = new AccessControl({}, "client");
  assert.ok(open.permits("203.0.113.9") && open.permits("::1"));

  const allowOnly = new AccessControl({ allow: ranges("127.0.0.0/8", "::1") }, "client");
  assert.ok(allowOnly.permits("127.0.0.2"));
  assert.ok(allowOnly.permits("::1"));
  assert.ok(!allowOnly.permits("192.0.2.1"));
  assert.ok(!allowOnly.permits("::2"));

  const denyOnly = new AccessControl({ deny: ranges("127.0.0.3") }, "client");
  assert.ok(denyOnly.permits("127.0.0.2"));
  assert.ok(!denyOnly.permits("127.0.0.3"));

  const both = new AccessControl({
    allow: ranges("127.0.0.0/8"),
    deny: ranges("127.0.0.3", "127.0.1.0/24"),
  }, "client");
  assert.ok(both.permits("127.0.0.2"));
  assert.ok(!both.permits("127.0.0.3"), "deny wins when both match");
  assert.ok(!both.permits("127.0.1.200"));
  assert.ok(!both.permits("10.0.0.1"), "not on the allow list");
  assert.equal(both.refusal("127.0.0.3"), "ERR not allowed from 127.0.0.3");
  // A peer address with a zone is matched without it.
  assert.ok(new AccessControl({ allow: ranges("fe80::/10") }, "client").permits("fe80::1%2"));
  // What cannot be read as an address is on no list: out when there is an allow list.
  assert.ok(!allowOnly.permits("not-an-address"));
  assert.ok(denyOnly.permits("not-an-address"));
});

Deno.test("AccessControl matches an IPv4-mapped peer with IPv4 rules and counts it as one address", () => {
  const access = new AccessControl({
    allow: [range("127.0.0.0/8")],
    deny: [range("::ffff:127.0.0.3")],
    maxPerAddress: 2,
  }, "client");
  assert.ok(access.permits("::ffff:127.0.0.2"));
  assert.equal(access.refusal("::ffff:127.0.0.3"), "ERR not allowed from 127.0.0.3");
  assert.equal(access.refusal("127.0.0.3"), "ERR not allowed from 127.0.0.3");
  assert.equal(addressKey("::ffff:7f00:2"), "127.0.0.2");
  assert.equal(addressKey("2001:0DB8:0:0:0:0:0:1"), "2001:db8::1");
  access.take("127.0.0.2");
  access.take("::ffff:127.0.0.2");
  assert.equal(access.countFrom("127.0.0.2"), 2);
  assert.equal(
    access.refusal("::ffff:7f00:2"),
    "ERR too many clients from 127.0.0.2 (max 2 per address)",
  );
});

Deno.test("AccessControl counts members per address and frees a slot on release", () => {
  const access = new AccessControl({ maxPerAddress: 1 }, "peer");
  assert.equal(access.refusal("127.0.0.2"), undefined);
  access.take("127.0.0.2");
  assert.equal(access.refusal("127.0.0.2"), say.tooManyFromAddress("127.0.0.2", 1, "peer"));
  assert.equal(
    access.refusal("127.0.0.2"),
    "ERR too many peers from 127.0.0.2 (max 1 per address)",
  );
  assert.equal(access.refusal("127.0.0.3"), undefined, "another address is counted apart");
  access.release("127.0.0.2");
  assert.equal(access.countFrom("127.0.0.2"), 0);
  assert.equal(access.refusal("127.0.0.2"), undefined);
  // Without a limit nothing is counted.
  const unlimited = new AccessControl({}, "client");
  for (let i = 0; i < 5; i++) unlimited.take("127.0.0.2");
  assert.equal(unlimited.countFrom("127.0.0.2"), 0);
  assert.equal(unlimited.refusal("127.0.0.2"), undefined);
});

Deno.test("AnswerBudget allows its number of answers in each second of its clock", () => {
  const clock = { now: 0 };
  const budget = new AnswerBudget(3, () => clock.now);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => budget.take()), [true, true, true, false, false]);
  clock.now = 999;
  assert.equal(budget.take(), false, "still the same second");
  clock.now = 1000;
  assert.deepEqual([1, 2, 3, 4].map(() => budget.take()), [true, true, true, false]);
});

// ---- the TCP server

Deno.test("server tells a denied client ERR not allowed, closes it, logs it, and lets others in", async () => {
  await using server = new TestServer({
    maxClients: 1,
    access: { allow: [range("127.0.0.0/30")], deny: [range("127.0.0.3")] },
  });
  for (const host of ["127.0.0.3", "127.0.0.4"]) {
    using refused = await BoundClient.connect(host, server.port);
    // One line, then the server's FIN: nothing else, no welcome.
    assert.deepEqual(await refused.rest(), [`ERR not allowed from ${host}`]);
    await server.waitLog((line) =>
      line === `refused ${host}:${refused.localPort}: not allowed from ${host}`
    );
  }
  // The refused never took the one slot, nor an id.
  using allowed = await BoundClient.connect("127.0.0.2", server.port);
  assert.equal(await allowed.line(), say.welcome("user1"));
  await server.waitLog((line) => line === `connected 127.0.0.2:${allowed.localPort} id=1 user1`);
  assert.ok(!server.logs.some((line) => /^connected 127\.0\.0\.[34]:/.test(line)));
});

Deno.test("server on a dual-stack socket matches IPv4-mapped peers against IPv4 rules", async () => {
  // An IPv6 socket on ::ffff:127.0.0.1 (loopback only) sees IPv4 clients as ::ffff:127.0.0.x.
  await using server = new TestServer({
    host: "::ffff:127.0.0.1",
    access: { deny: [range("127.0.0.3")] },
  });
  using refused = await BoundClient.connect("127.0.0.3", server.port);
  assert.deepEqual(await refused.rest(), ["ERR not allowed from 127.0.0.3"]);
  using allowed = await BoundClient.connect("127.0.0.2", server.port);
  assert.equal(await allowed.line(), say.welcome("user1"));
});

Deno.test("server turns away a client past --max-per-address and lets its address in once one leaves", async () => {
  await using server = new TestServer({ access: { maxPerAddress: 2 }, trace: true });
  using first = await BoundClient.connect("127.0.0.2", server.port);
  assert.equal(await first.line(), say.welcome("user1"));
  using second = await BoundClient.connect("127.0.0.2", server.port);
  assert.equal(await second.line(), say.welcome("user2"));
  using third = await BoundClient.connect("127.0.0.2", server.port);
  assert.deepEqual(await third.rest(), ["ERR too many clients from 127.0.0.2 (max 2 per address)"]);
  await server.waitLog((line) =>
    line ===
      `refused 127.0.0.2:${third.localPort}: too many clients from 127.0.0.2 (max 2 per address)`
  );
  // Another address is counted apart.
  using other = await BoundClient.connect("127.0.0.3", server.port);
  assert.equal(await other.line(), say.welcome("user3"));
  // One from 127.0.0.2 leaves: its slot is free once its socket is released (--trace says when).
  await first.send("/quit\n");
  assert.deepEqual(await first.rest(), ["* user2 joined", "* user3 joined", say.bye]);
  await server.waitLog((line) =>
    line === `trace 127.0.0.2:${first.localPort} closed (socket released)`
  );
  using fourth = await BoundClient.connect("127.0.0.2", server.port);
  assert.match((await fourth.line())!, /^\* welcome, you are user4 /);
});

// ---- the UDP server

Deno.test("udp server answers a denied peer with ERR not allowed and keeps it out of the room", async () => {
  await withUdpServer({
    access: { allow: [range("127.0.0.2"), range("127.0.0.3")], deny: [range("127.0.0.3")] },
  }, async (server, log) => {
    using inside = new TestPeer("127.0.0.2");
    await inside.send(server.addr, "/nick alice");
    assert.equal(await inside.next(), say.welcome("alice"));
    for (const host of ["127.0.0.3", "127.0.0.4"]) {
      using denied = new TestPeer(host);
      await denied.send(server.addr, "/nick mallory");
      assert.equal(await denied.next(), `ERR not allowed from ${host}`);
      await log.waitFor(`refused ${host}:${denied.addr.port}: not allowed from ${host}`);
      await denied.send(server.addr, "hello?");
      assert.equal(await denied.next(), `ERR not allowed from ${host}`);
    }
    assert.equal(server.peerCount, 1);
    // Nobody in the room heard of them.
    await inside.send(server.addr, "/list");
    assert.match(await inside.next(), /^\* id=1 name=alice addr=127\.0\.0\.2:\d+ /);
    assert.equal(await inside.next(), "* 1 peer");
  });
});

Deno.test("udp server on a dual-stack socket matches IPv4-mapped peers against IPv4 rules", async () => {
  await withUdpServer({
    host: "::ffff:127.0.0.1",
    access: { deny: [range("127.0.0.3")] },
  }, async (server) => {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.addr.port };
    using denied = new TestPeer("127.0.0.3");
    await denied.send(to, "hello");
    assert.equal(await denied.next(), "ERR not allowed from 127.0.0.3");
    using allowed = new TestPeer("127.0.0.2");
    await allowed.send(to, "hello");
    assert.equal(await allowed.next(), say.welcome("user1"));
    assert.equal(server.peerCount, 1);
  });
});

Deno.test("udp server sends at most its budget of refusals a second: a forged source gets no flood", async () => {
  await withUdpServer({ access: { deny: [range("127.0.0.3")] } }, async (server, log) => {
    using denied = new TestPeer("127.0.0.3");
    const sent = 60;
    const started = performance.now();
    for (let i = 0; i < sent; i++) await denied.send(server.addr, "x");
    const refusals = await within(
      5000,
      "every datagram handled",
      log.waitForCount(/^refused 127\.0\.0\.3:\d+: not allowed/, sent),
    );
    const elapsed = performance.now() - started;
    const answered = refusals.filter((line) => !line.includes("(not answered")).length;
    // The log line comes when an answer is queued, not sent: wait for each to arrive,
    // then for nothing more (received() reads up to a marker sent behind them).
    for (let i = 0; i < answered; i++) {
      assert.equal(await denied.next(), "ERR not allowed from 127.0.0.3", `answer ${i + 1}`);
    }
    assert.deepEqual(await denied.received(), []);
    // The budget is per second: a run that crosses into a second window may have two.
    const windows = Math.ceil(elapsed / 1000) + 1;
    assert.ok(answered >= STRANGER_ANSWERS_PER_SECOND, `answered ${answered}`);
    assert.ok(answered <= STRANGER_ANSWERS_PER_SECOND * windows, `answered ${answered}`);
    assert.ok(
      refusals.some((line) =>
        line.endsWith(`(not answered: over ${STRANGER_ANSWERS_PER_SECOND} a second)`)
      ),
    );
  });
});

Deno.test("udp server answers strangers to a full room within the budget: server full is no flood", async () => {
  await withUdpServer({ maxPeers: 1 }, async (server, log) => {
    using member = new TestPeer("127.0.0.2");
    await member.send(server.addr, "/nick member");
    assert.equal(await member.next(), say.welcome("member"));
    using stranger = new TestPeer("127.0.0.3");
    const sent = 60;
    const started = performance.now();
    for (let i = 0; i < sent; i++) await stranger.send(server.addr, "x");
    const full = /^refused 127\.0\.0\.3:\d+: server full \(max 1 peer\)$/;
    await within(5000, "every datagram handled", log.waitForCount(full, sent));
    const elapsed = performance.now() - started;
    const unanswered = log.lines.filter((line) =>
      /^not answered 127\.0\.0\.3:\d+: over \d+ a second$/.test(line)
    ).length;
    const answered = sent - unanswered;
    for (let i = 0; i < answered; i++) {
      assert.equal(await stranger.next(), say.serverFull(1, "peer"), `answer ${i + 1}`);
    }
    assert.deepEqual(await stranger.received(), [], "nothing past the budget");
    const windows = Math.ceil(elapsed / 1000) + 1;
    assert.ok(answered >= STRANGER_ANSWERS_PER_SECOND, `answered ${answered}`);
    assert.ok(answered <= STRANGER_ANSWERS_PER_SECOND * windows, `answered ${answered}`);
    assert.equal(server.peerCount, 1);
    assert.deepEqual(await member.received(), [], "the room heard nothing of it");
  });
});

Deno.test("udp server turns away a third peer from one address at --max-per-address 2, any port", async () => {
  await withUdpServer({ access: { maxPerAddress: 2 } }, async (server, log) => {
    using a = new TestPeer("127.0.0.2");
    using b = new TestPeer("127.0.0.2");
    using c = new TestPeer("127.0.0.2");
    using other = new TestPeer("127.0.0.3");
    await a.send(server.addr, "/nick a");
    assert.equal(await a.next(), say.welcome("a"));
    await b.send(server.addr, "/nick b");
    assert.equal(await b.next(), say.welcome("b"));
    await c.send(server.addr, "/nick c");
    assert.equal(await c.next(), "ERR too many peers from 127.0.0.2 (max 2 per address)");
    await log.waitFor(
      `refused 127.0.0.2:${c.addr.port}: too many peers from 127.0.0.2 (max 2 per address)`,
    );
    await other.send(server.addr, "/nick other");
    assert.equal(await other.next(), say.welcome("other"));
    assert.equal(server.peerCount, 3);
    // When one leaves, its address has room again.
    await a.send(server.addr, "/quit");
    await log.waitFor(/^left 127\.0\.0\.2:\d+ id=1 a \(quit\)$/);
    await c.send(server.addr, "/nick c");
    assert.equal(await c.next(), say.welcome("c"));
  });
});

Deno.test("udp echo refuses a denied address and echoes for an allowed one", async () => {
  await withUdpServer(
    { mode: "echo", access: { allow: [range("127.0.0.2")] } },
    async (server) => {
      using allowed = new TestPeer("127.0.0.2");
      await allowed.send(server.addr, "你好");
      assert.equal(await allowed.next(), "你好");
      using denied = new TestPeer("127.0.0.3");
      await denied.send(server.addr, "你好");
      assert.equal(await denied.next(), "ERR not allowed from 127.0.0.3");
    },
  );
});

// ---- the scripts

/** Runs a script that should fail at once; returns its exit code and stderr lines. */
async function runFailing(script: string, args: string[]) {
  const child = runScript(script, ["--port", "0", "--no-console", ...args]);
  await child.stdin.close();
  const [status, stderr, stdout] = await Promise.all([
    child.child.status,
    child.stderr.rest(),
    child.stdout.rest(),
  ]);
  return { code: status.code, stderr, stdout };
}

for (const script of ["server.ts", "udp_server.ts"]) {
  Deno.test({
    name: `${script} refuses bad --allow, --deny and --max-per-address values in one line, exit 2`,
    ignore: NEEDS_SPAWN,
    async fn() {
      const cases: [string[], string][] = [
        [
          ["--allow", "10.0.0.0/33"],
          'Cannot parse --allow "10.0.0.0/33": the prefix after / ' +
          "must be a whole number from 0 to 32",
        ],
        [
          ["--deny", "127.0.0.1", "--deny", "example.com"],
          'Cannot parse --deny "example.com": ' +
          "not an IPv4 address (give an address or a CIDR range, as in 192.0.2.0/24 or " +
          "2001:db8::/32; host names are not taken)",
        ],
        [
          ["--allow", "2001:db8::1/32"],
          'Cannot parse --allow "2001:db8::1/32": bits are set ' +
          "past the /32 prefix: did you mean 2001:db8::/32?",
        ],
        [
          ["--max-per-address", "lots"],
          'Cannot parse --max-per-address "lots": must be a whole number from 0 to 1000000',
        ],
        [["--allow"], "Option '--allow <value>' argument missing"],
      ];
      for (const [args, message] of cases) {
        const result = await runFailing(script, args);
        assert.deepEqual(result.stderr, [`${script}: ${message} (see --help)`], args.join(" "));
        assert.equal(result.code, 2);
      }
    },
  });

  Deno.test({
    name: `${script} --help says who may connect, and that --deny wins over --allow`,
    ignore: NEEDS_SPAWN,
    async fn() {
      const help = runScript(script, ["--help"]);
      const [status, lines] = await Promise.all([help.child.status, help.stdout.rest()]);
      await help.stderr.rest();
      assert.equal(status.code, 0);
      const text = lines.join("\n");
      for (const flag of ["--allow", "--deny", "--max-per-address", "--password-file"]) {
        assert.match(text, new RegExp(`^  ${flag} `, "m"), flag);
      }
      // Read as prose: the help wraps its lines where it likes.
      const prose = text.replace(/\s+/g, " ");
      assert.match(prose, /even if --allow lists them \(as in ncat: deny wins\)/);
      assert.match(prose, /"ERR not allowed from ADDRESS"/);
    },
  });
}

Deno.test({
  name: "udp_server.ts refuses --max-per-address in echo mode, which keeps no peers",
  ignore: NEEDS_SPAWN,
  async fn() {
    const result = await runFailing("udp_server.ts", ["--mode", "echo", "--max-per-address", "2"]);
    assert.deepEqual(result.stderr, [
      "udp_server.ts: --max-per-address counts peers: --mode echo keeps none (see --help)",
    ]);
    assert.equal(result.code, 2);
  },
});

Deno.test({
  name: "server.ts and udp_server.ts --deny refuse a real 127.0.0.3 and log it, with its time",
  ignore: NEEDS_SPAWN,
  async fn() {
    const tcp = runScript(
      "server.ts",
      ["--port", "0", "--no-console", "--deny", "127.0.0.3,127.0.0.4", "--max-per-address", "1"],
      { serverLog: true },
    );
    const udp = runScript(
      "udp_server.ts",
      ["--port", "0", "--no-console", "--allow", "127.0.0.2", "--allow", "::1"],
      { serverLog: true },
    );
    try {
      const port = async (server: typeof tcp) =>
        Number(
          /:(\d+) \(/.exec(await server.stdout.until((l) => l.startsWith("listening on ")))![1],
        );
      const tcpPort = await port(tcp);
      const udpPort = await port(udp);

      using refused = await BoundClient.connect("127.0.0.3", tcpPort);
      assert.deepEqual(await refused.rest(), ["ERR not allowed from 127.0.0.3"]);
      await tcp.stdout.until((line) =>
        line === `refused 127.0.0.3:${refused.localPort}: not allowed from 127.0.0.3`
      );
      using first = await BoundClient.connect("127.0.0.2", tcpPort);
      assert.equal(await first.line(), say.welcome("user1"));
      using second = await BoundClient.connect("127.0.0.2", tcpPort);
      assert.deepEqual(await second.rest(), [
        "ERR too many clients from 127.0.0.2 (max 1 per address)",
      ]);

      using denied = new TestPeer("127.0.0.5");
      const to = { transport: "udp" as const, hostname: "127.0.0.1", port: udpPort };
      await denied.send(to, "hello");
      assert.equal(await denied.next(), "ERR not allowed from 127.0.0.5");
      await udp.stdout.until((line) =>
        line === `refused 127.0.0.5:${denied.addr.port}: not allowed from 127.0.0.5`
      );
      using allowed = new TestPeer("127.0.0.2");
      await allowed.send(to, "hello");
      assert.equal(await allowed.next(), say.welcome("user1"));
    } finally {
      for (const server of [tcp, udp]) {
        server.child.kill("SIGTERM");
        await server.child.status;
        await Promise.all([server.stdout.rest(), server.stderr.rest()]);
      }
    }
  },
});
