/**
 * The faults a room shared over Redis survives (redis_seam.ts): an instance
 * killed, Redis restarted empty, a connection killed with CLIENT KILL, a
 * stalled instance (behind the stream, or reaped while alive), an instance
 * that dies while Redis is away, and a UDP server in the same room. Each test starts its
 * own `redis-server` on a free loopback port, persistence off, and shortens
 * the seam's timings through its options (the defaults notice a dead
 * instance in about 15 s).
 */
import assert from "node:assert/strict";
import { linkName } from "../redis_seam.ts";
import { join, runScript, type TestClient, within } from "./util.ts";
import { TestPeer } from "./udp_util.ts";
import { connectTo, instance, relayed, spawnInstance, startRedis } from "./redis_util.ts";

/** Timings short enough for a test: a dead instance is noticed in about 1.5 s. */
const FAST = { heartbeatTtlMs: 1_000, reapIntervalMs: 200, maxBackoffMs: 200 };

/** Reads lines until `match`, returning every line read (the match last). */
async function readUntil(client: TestClient, match: (line: string) => boolean): Promise<string[]> {
  const lines: string[] = [];
  while (true) {
    const line = await client.line();
    if (line === null) throw new Error(`connection ended; read: ${lines.join(" | ")}`);
    lines.push(line);
    if (match(line)) return lines;
  }
}

/** `/list` as a member sees it, up to its count line. */
async function list(client: TestClient): Promise<string[]> {
  await client.send("/list\n");
  return await within(5_000, "/list", readUntil(client, (line) => /^\* \d+ clients?$/.test(line)));
}

Deno.test({
  name:
    "Redis room: an instance SIGKILLed, its members leave everywhere once, their names are free, no ghost in /list",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis, "test", FAST);
    await using b = await instance(redis, "test", FAST);
    await using doomed = await spawnInstance(redis, "test", {
      ttlMs: FAST.heartbeatTtlMs,
      everyMs: FAST.reapIntervalMs,
      maxLength: 1000,
    });
    const alice = await join(a);
    const bob = await join(b);
    const kate = await connectTo(doomed.port);
    const kit = await connectTo(doomed.port);
    try {
      await kate.send("/nick kate\n");
      await within(5_000, "kate named, seen on a", alice.until(/^\* user\d+ is now kate$/));
      await within(5_000, "kate named, seen on b", bob.until(/^\* user\d+ is now kate$/));
      assert.equal((await list(alice)).at(-1), "* 4 clients");

      const killedAt = performance.now();
      doomed.child.kill("SIGKILL");
      const cause = `instance ${doomed.instance} lost`;
      // Both members leave, in the order the reaper found them, on both other instances.
      const leaves = new RegExp(`^\\* (kate|user\\d+) left \\(${cause}\\)$`);
      for (const client of [alice, bob]) {
        const names = new Set<string>();
        await within(
          5_000,
          "kate's and kit's leaves",
          readUntil(client, (line) => (leaves.test(line) && names.add(line), names.size === 2)),
        );
      }
      const ms = Math.round(performance.now() - killedAt);
      // The reaper logs once its script has returned, which may be after the
      // leaves it wrote have reached the clients: wait for the line.
      const reaped = (line: string) =>
        line.includes(`instance ${doomed.instance} stopped its heartbeat`);
      await within(
        5_000,
        "the reaper's log line",
        Promise.race([a.waitLog(reaped), b.waitLog(reaped)]),
      );
      const reapers = [a, b].filter((x) => x.logs.some(reaped));
      assert.equal(reapers.length, 1, "one instance reaped it");

      // A line from b after the leaves: alice reads up to it, and no second leave came.
      await bob.send("after the reap\n");
      const before = await within(
        5_000,
        "the line after",
        readUntil(alice, (l) => l.endsWith("after the reap")),
      );
      assert.ok(!before.some((line) => line.includes("kate left")), before.join(" | "));
      const stream = await redis.cli("XRANGE", "netchat:{test}:events", "-", "+");
      assert.equal(
        stream.filter((line) => line.includes('"name":"kate"') && line.includes("leave")).length,
        1,
      );

      const seen = await list(bob);
      assert.equal(seen.at(-1), "* 2 clients", seen.join("\n"));
      assert.ok(!seen.some((line) => line.includes("name=kate")), "no ghost");
      await bob.send("/nick kate\n");
      await within(5_000, "the name is free", bob.until(/^\* user\d+ is now kate$/));
      console.log(
        `a SIGKILLed instance's members left the others in ${ms} ms (TTL 1000 ms, reaper every 200 ms)`,
      );
    } finally {
      for (const client of [alice, bob, kate, kit]) client[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "Redis room: Redis restarted empty, lines wait in order up to the bound, past it the sender is told, no instance number reused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    const BOUND = 20;
    await using a = await instance(redis, "test", { ...FAST, maxQueuedEvents: BOUND });
    await using b = await instance(redis, "test", FAST);
    const alice = await join(a);
    const bob = await join(b);
    try {
      await within(5_000, "alice sees bob", alice.until(/ joined$/));
      await redis.stop();
      const downAt = performance.now();
      for (const [server, client] of [[a, alice], [b, bob]] as const) {
        await within(5_000, "the outage told", client.until(/^\* room unavailable: /));
        await within(
          5_000,
          "the outage logged",
          server.waitLog((l) => l.startsWith("redis: lost ")),
        );
      }
      let text = "";
      for (let n = 1; n <= BOUND + 5; n++) text += `during ${n} 你好\n`;
      await alice.send(text);
      for (let n = 0; n < 5; n++) {
        assert.equal(
          await within(5_000, "refused", alice.line()),
          "ERR room unavailable: line not sent",
        );
      }
      await redis.start();
      for (const [server, client] of [[a, alice], [b, bob]] as const) {
        await within(10_000, "back, told", client.until("* room available again"));
        await within(
          5_000,
          "back, logged",
          server.waitLog((l) => l.startsWith("redis: reconnected")),
        );
      }
      const ms = Math.round(performance.now() - downAt);
      await alice.send("after\n");
      const lines = await within(10_000, "the queued lines", relayed(bob, BOUND + 1));
      assert.deepEqual(
        lines.map((line) => line.replace(/^<\S+> /, "")),
        [...Array.from({ length: BOUND }, (_, i) => `during ${i + 1} 你好`), "after"],
      );
      await bob.send("back to you\n");
      assert.match(
        await within(5_000, "b to a", alice.until(/back to you/)),
        /^<user\d+> back to you$/,
      );

      // Redis came back empty: a new instance still gets a number of its own.
      await using c = await instance(redis, "test", FAST);
      assert.ok(c.seam.instance > Math.max(a.seam.instance, b.seam.instance), `${c.seam.instance}`);
      const carol = await join(c);
      using _ = carol;
      await within(5_000, "carol seen on a", alice.until(/ joined$/));
      const seen = await list(alice);
      assert.equal(seen.at(-1), "* 3 clients", seen.join("\n"));
      assert.equal(new Set(seen.slice(0, -1).map((l) => /id=(\d+)/.exec(l)![1])).size, 3);
      console.log(`Redis down and back in ${ms} ms: ${BOUND} lines delivered after, 5 refused`);
    } finally {
      alice[Symbol.dispose]();
      bob[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "Redis room: CLIENT KILL of every link, then of one instance's reader: each reconnects, says so, loses no line",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis, "test", FAST);
    await using b = await instance(redis, "test", FAST);
    const alice = await join(a);
    const bob = await join(b);
    try {
      await within(5_000, "alice sees bob", alice.until(/ joined$/));
      let sent = 0;
      const burst = async (count: number) => {
        let text = "";
        for (let n = 0; n < count; n++) text += `line ${++sent}\n`;
        await bob.send(text);
      };
      const killed = await redis.cli("CLIENT", "KILL", "TYPE", "normal");
      assert.ok(Number(killed[0]) >= 4, `killed ${killed[0]}`);
      await burst(50);
      for (const [server, client] of [[a, alice], [b, bob]] as const) {
        await within(5_000, "told", client.until(/^\* room unavailable: /));
        await within(5_000, "told back", client.until("* room available again"));
        await within(
          5_000,
          "logged back",
          server.waitLog((l) => l.startsWith("redis: reconnected")),
        );
      }
      await burst(10);

      // Only a's reader: found by its name in CLIENT LIST.
      const name = linkName("test", a.seam.instance, "reader");
      const entry = (await redis.cli("CLIENT", "LIST")).find((l) => l.includes(` name=${name} `));
      assert.ok(entry !== undefined, "a's reader is named in CLIENT LIST");
      const id = /^id=(\d+) /.exec(entry)![1];
      const startedAt = performance.now();
      assert.deepEqual(await redis.cli("CLIENT", "KILL", "ID", id), ["1"]);
      await burst(40);
      await within(5_000, "reader lost, told", alice.until(/^\* room unavailable: /));
      await within(5_000, "reader back, told", alice.until("* room available again"));
      const ms = Math.round(performance.now() - startedAt);
      await burst(10);
      const lines = await within(10_000, "every line", relayed(alice, sent));
      assert.deepEqual(
        lines.map((line) => line.replace(/^<\S+> /, "")),
        Array.from({ length: sent }, (_, i) => `line ${i + 1}`),
      );
      console.log(
        `CLIENT KILL: ${sent} lines, none lost; a reader killed alone was back in ${ms} ms`,
      );
    } finally {
      alice[Symbol.dispose]();
      bob[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "Redis room: a stalled instance (SIGSTOP) catches up without loss, and past the trim bound says exactly what it missed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Small stream nodes, so MAXLEN ~ trims close to the bound.
    await using redis = await startRedis(undefined, ["--stream-node-max-entries", "10"]);
    const MAXLEN = 300;
    await using a = await instance(redis, "test", { ...FAST, streamMaxLength: MAXLEN });
    // A long TTL: the stall is not a death.
    await using slow = await spawnInstance(redis, "test", {
      ttlMs: 20_000,
      everyMs: 200,
      maxLength: MAXLEN,
    });
    const alice = await join(a);
    const witness = await join(a);
    const sam = await connectTo(slow.port);
    try {
      await within(5_000, "alice sees sam", alice.until(/ joined$/));
      await within(5_000, "witness sees sam", witness.until(/ joined$/));
      let sent = 0;
      const stalled = async (count: number) => {
        slow.child.kill("SIGSTOP");
        // A hundred at a time, each in the stream (a's other member has it)
        // before the next: a keeps up with its own writes, only the stalled one lags.
        for (let chunk = 0; chunk < count; chunk += 100) {
          let text = "";
          for (let n = chunk; n < Math.min(count, chunk + 100); n++) text += `line ${++sent}\n`;
          await alice.send(text);
          await within(5_000, "the witness", relayed(witness, Math.min(100, count - chunk)));
        }
        slow.child.kill("SIGCONT");
      };

      await stalled(50); // within the bound
      const first = await within(10_000, "caught up", relayed(sam, 50));
      assert.deepEqual(
        first.map((l) => l.replace(/^<\S+> /, "")),
        Array.from({ length: 50 }, (_, i) => `line ${i + 1}`),
      );

      await stalled(1000); // past it
      const startedAt = performance.now();
      const got = await within(
        10_000,
        "the rest and the notice",
        readUntil(sam, (line) => line.endsWith(`line ${sent}`)),
      );
      const ms = Math.round(performance.now() - startedAt);
      const notices = got.filter((line) =>
        line.startsWith("* ") && line.includes("were missed here")
      );
      assert.equal(notices.length, 1, got.filter((l) => l.startsWith("*")).join(" | "));
      const missed = Number(/^\* (\d+) room events of instance (\d+) /.exec(notices[0])![1]);
      // Every line is either delivered, in order, or counted by the notice at its place.
      let next = sent - 1000 + 1;
      let delivered = 0;
      for (const line of got) {
        if (line === notices[0]) next += missed;
        const n = /^<\S+> line (\d+)$/.exec(line)?.[1];
        if (n === undefined) continue;
        assert.equal(Number(n), next++, `in order, or told: ${line}`);
        delivered++;
      }
      assert.equal(next, sent + 1);
      assert.ok(missed > 0 && delivered + missed === 1000, `${delivered} + ${missed}`);
      await within(
        5_000,
        "logged",
        slow.waitLog((l) => l.startsWith(`redis: missed ${missed} events`)),
      );
      // Still one room: sam's line reaches alice, and /list holds everyone.
      await sam.send("still here\n");
      await within(5_000, "sam's line", alice.until(/still here$/));
      assert.equal((await list(sam)).at(-1), "* 3 clients");
      console.log(
        `a stalled instance: 50 lines caught up; past MAXLEN ${MAXLEN}: ${delivered} delivered, ${missed} missed and told (${ms} ms)`,
      );
    } finally {
      for (const client of [alice, witness, sam]) client[Symbol.dispose]();
    }
  },
});

/** Who `/list` shows (its lines among `lines`), as `id name instance`, sorted. */
function who(lines: string[]): string[] {
  return lines.filter((line) => line.startsWith("* id=")).map((line) => {
    const [, id, name, instance] = /^\* id=(\d+) name=(\S+) .* instance=(\d+)$/.exec(line)!;
    return `${id} ${name} ${instance}`;
  }).sort();
}

Deno.test({
  name:
    "Redis room: an instance stalled past the TTL (SIGSTOP) is reaped, and on SIGCONT registers its members again: /list agrees everywhere, a name taken meanwhile falls back to the default",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis, "test", FAST);
    await using stalled = await spawnInstance(redis, "test", {
      ttlMs: FAST.heartbeatTtlMs,
      everyMs: FAST.reapIntervalMs,
      maxLength: 1000,
    });
    const alice = await join(a);
    const bob = await join(a);
    const kate = await connectTo(stalled.port);
    const kit = await connectTo(stalled.port);
    try {
      await kate.send("/nick kate\n");
      await within(5_000, "kate named", alice.until(/^\* user\d+ is now kate$/));
      await kit.send("/nick kit\n");
      await within(5_000, "kit named", alice.until(/^\* user\d+ is now kit$/));
      await within(5_000, "kate sees kit named", kate.until(/^\* user\d+ is now kit$/));
      assert.equal((await list(alice)).at(-1), "* 4 clients");

      stalled.child.kill("SIGSTOP");
      const cause = `instance ${stalled.instance} lost`;
      const gone = new Set<string>();
      await within(
        5_000,
        "kate's and kit's leaves on a",
        readUntil(alice, (line) => {
          const name = new RegExp(`^\\* (kate|kit) left \\(${cause}\\)$`).exec(line)?.[1];
          if (name !== undefined) gone.add(name);
          return gone.size === 2;
        }),
      );
      // Meanwhile bob takes the name kit, freed by the reaper.
      await bob.send("/nick kit\n");
      await within(5_000, "bob is kit", bob.until(/^\* user\d+ is now kit$/));

      stalled.child.kill("SIGCONT");
      const resumedAt = performance.now();
      await within(5_000, "kit told", kit.until("ERR name taken: kit"));
      const fallback = /^\* kit is now (user\d+)$/.exec(
        await within(5_000, "kit renamed", kit.until(/^\* kit is now /)),
      )![1];
      const back = new Set<string>();
      const seen = await within(
        5_000,
        "kate and kit join a again",
        readUntil(alice, (line) => {
          if (line === "* kate joined" || line === `* ${fallback} joined`) back.add(line);
          return back.size === 2;
        }),
      );
      const ms = Math.round(performance.now() - resumedAt);
      assert.ok(!seen.some((line) => line.includes(" left ")), seen.join(" | "));
      await within(
        5_000,
        "logged",
        stalled.waitLog((l) => l.includes("was taken for dead: registering its members again")),
      );

      // One room again: every instance lists the same four members. The
      // resumed instance may still be reading what it missed (bob's rename):
      // ask both again, a /list round trip each, until they agree.
      let onA = who(await list(alice));
      let onStalled = await list(kate);
      await within(
        5_000,
        "the lists agree",
        (async () => {
          while (JSON.stringify(who(onStalled)) !== JSON.stringify(onA)) {
            onA = who(await list(alice));
            onStalled = await list(kate);
          }
        })(),
      );
      assert.equal(onA.length, 4, onA.join("\n"));
      assert.deepEqual(who(onStalled), onA);
      assert.ok(onA.some((line) => line.endsWith(` kit ${a.seam.instance}`)), "bob is kit");
      assert.ok(onA.some((line) => line.endsWith(` ${fallback} ${stalled.instance}`)));
      // kate never saw her own instance's members leave.
      assert.ok(!onStalled.some((line) => line.includes(" left ")), onStalled.join(" | "));

      await kate.send("你好 after the stall\n");
      assert.equal(
        await within(5_000, "kate to a", alice.until(/after the stall$/)),
        "<kate> 你好 after the stall",
      );
      await alice.send("back to you 👋🏽\n");
      for (const client of [kate, kit]) {
        assert.match(
          await within(5_000, "a to the stalled one", client.until(/back to you/)),
          /^<user\d+> back to you 👋🏽$/,
        );
      }

      // Registered again, it is reaped again when it dies: no ghost.
      stalled.child.kill("SIGKILL");
      const left = new Set<string>();
      await within(
        5_000,
        "the leaves after the kill",
        readUntil(bob, (line) => {
          if (line.endsWith(`left (${cause})`)) left.add(line);
          return left.has(`* kate left (${cause})`) && left.has(`* ${fallback} left (${cause})`);
        }),
      );
      assert.equal((await list(bob)).at(-1), "* 2 clients");
      console.log(
        `a stalled instance reaped while alive: its members were back everywhere ${ms} ms after SIGCONT (TTL 1000 ms)`,
      );
    } finally {
      for (const client of [alice, bob, kate, kit]) client[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "Redis room: an instance that dies while Redis is down, Redis back empty: no ghost in the survivors' /list",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis, "test", FAST);
    await using b = await instance(redis, "test", FAST);
    await using doomed = await spawnInstance(redis, "test", {
      ttlMs: FAST.heartbeatTtlMs,
      everyMs: FAST.reapIntervalMs,
      maxLength: 1000,
    });
    const alice = await join(a);
    const bob = await join(b);
    const kate = await connectTo(doomed.port);
    try {
      await kate.send("/nick kate\n");
      await within(5_000, "kate named, seen on a", alice.until(/^\* user\d+ is now kate$/));
      await within(5_000, "kate named, seen on b", bob.until(/^\* user\d+ is now kate$/));
      assert.equal((await list(alice)).at(-1), "* 3 clients");

      await redis.stop();
      for (const client of [alice, bob]) {
        await within(5_000, "the outage told", client.until(/^\* room unavailable: /));
      }
      doomed.child.kill("SIGKILL");
      await within(5_000, "the doomed instance exits", doomed.child.status);
      await redis.start();
      const startedAt = performance.now();
      for (const [server, client] of [[a, alice], [b, bob]] as const) {
        await within(10_000, "back, told", client.until("* room available again"));
        await within(
          5_000,
          "the registry read back",
          server.waitLog((l) => l.startsWith("redis: read the room's 2 members from the registry")),
        );
      }
      const ms = Math.round(performance.now() - startedAt);
      for (const client of [alice, bob]) {
        const seen = await list(client);
        assert.equal(seen.at(-1), "* 2 clients", seen.join("\n"));
        assert.ok(!seen.some((line) => line.includes("name=kate")), "no ghost");
      }
      await alice.send("still one room\n");
      assert.match(await within(5_000, "a to b", bob.until(/still one room$/)), /^<user\d+> /);
      await bob.send("/nick kate\n");
      await within(5_000, "the name is free", bob.until(/^\* user\d+ is now kate$/));
      console.log(`Redis back empty, a dead instance's member gone from /list in ${ms} ms`);
    } finally {
      for (const client of [alice, bob, kate]) client[Symbol.dispose]();
    }
  },
});

Deno.test({
  name: "udp_server.ts --redis: a UDP peer and a TCP client on another instance chat in one room",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using tcp = await instance(redis, "mixed", FAST);
    const udp = runScript(
      "udp_server.ts",
      [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--redis",
        redis.url,
        "--room",
        "mixed",
        "--no-console",
      ],
      { serverLog: true },
    );
    const alice = await join(tcp);
    using peer = new TestPeer();
    try {
      const listening = await within(
        20_000,
        "udp listening",
        udp.stdout.until((l) => l.startsWith("listening on ")),
      );
      const addr = {
        transport: "udp" as const,
        hostname: "127.0.0.1",
        port: Number(/:(\d+) \(/.exec(listening)![1]),
      };
      await peer.send(addr, "/nick 小明\n");
      // The name is claimed room-wide (a Redis round trip): in first, then renamed.
      assert.match(await peer.next(), /^\* welcome, you are user\d+ /);
      assert.match(await peer.next(), /^\* user\d+ is now 小明$/);
      await within(5_000, "the peer's join", alice.until(/^\* user\d+ joined$/));
      await within(5_000, "the peer's name", alice.until(/^\* user\d+ is now 小明$/));
      await peer.send(addr, "你好 from udp\n");
      assert.equal(
        await within(5_000, "udp to tcp", alice.until(/from udp/)),
        "<小明> 你好 from udp",
      );
      await alice.send("/nick alice\n");
      await within(5_000, "renamed", alice.until(/is now alice$/));
      await alice.send("hello from tcp 👋🏽\n");
      assert.equal(await peer.until((t) => t.includes("from tcp")), "<alice> hello from tcp 👋🏽");
      await alice.send("/msg 小明 private\n");
      assert.equal(await peer.until((t) => t.includes("private")), "<alice> (private) private");
    } finally {
      alice[Symbol.dispose]();
      udp.child.kill("SIGTERM");
      await within(10_000, "udp server exit", udp.child.status);
      await udp.stdin.close().catch(() => {});
      await Promise.all([udp.stdout.rest(), udp.stderr.rest()]);
    }
  },
});
