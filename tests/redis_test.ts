/**
 * Tests of one room across several server instances over Redis
 * (redis_seam.ts): each test starts its own `redis-server` on a free
 * loopback port, with persistence off, and stops it.
 */
import assert from "node:assert/strict";
import { finish, join, runProgram, runScript, type TestClient, within } from "./util.ts";
import { connectTo, instance, relayed, startRedis } from "./redis_util.ts";

Deno.test({
  name:
    "Redis room: 3 instances x 20 clients x 100 lines, nothing lost, doubled or reordered, one order everywhere",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    const INSTANCES = 3;
    const CLIENTS = 20;
    const LINES = 100;
    const servers = [];
    for (let i = 0; i < INSTANCES; i++) servers.push(await instance(redis));
    const clients: { client: TestClient; tag: string }[] = [];
    try {
      for (const [i, server] of servers.entries()) {
        for (let j = 0; j < CLIENTS; j++) {
          clients.push({ client: await join(server), tag: `s${i}c${j}` });
        }
      }
      const started = performance.now();
      const expected = (clients.length - 1) * LINES;
      const reading = clients.map(({ client }) => relayed(client, expected));
      await Promise.all(clients.map(({ client, tag }) => {
        let text = "";
        for (let n = 1; n <= LINES; n++) text += `${tag} ${n}\n`;
        return client.send(text);
      }));
      const seen = await within(20_000, "every line at every receiver", Promise.all(reading));
      const ms = Math.round(performance.now() - started);
      // Each instance logs each relayed line as it applies it: the room's order.
      const orders = servers.map((server) => server.logs.filter((line) => line.startsWith("<")));
      for (const order of orders) assert.equal(order.length, clients.length * LINES);
      for (const order of orders.slice(1)) {
        assert.deepEqual(order, orders[0], "one order on every instance");
      }
      let checked = 0;
      for (const [r, lines] of seen.entries()) {
        const own = clients[r].tag;
        const bySender = new Map<string, number[]>();
        for (const line of lines) {
          const [, tag, n] = /^<\S+> (\S+) (\d+)$/.exec(line)!;
          bySender.set(tag, [...bySender.get(tag) ?? [], Number(n)]);
        }
        assert.ok(!bySender.has(own), "a sender never gets its own line");
        for (const { tag } of clients) {
          if (tag === own) continue;
          const numbers = bySender.get(tag) ?? [];
          const lost = LINES - new Set(numbers).size;
          const duplicated = numbers.length - new Set(numbers).size;
          const reordered = numbers.filter((n, k) => k > 0 && n < numbers[k - 1]).length;
          assert.deepEqual({ lost, duplicated, reordered }, {
            lost: 0,
            duplicated: 0,
            reordered: 0,
          }, `${own} from ${tag}`);
        }
        const ownName = /^<(\S+)> /.exec(orders[0].find((line) => line.includes(` ${own} `))!)![1];
        assert.deepEqual(
          lines,
          orders[0].filter((line) => !line.startsWith(`<${ownName}> `)),
          `${own}'s order`,
        );
        checked++;
      }
      assert.equal(checked, INSTANCES * CLIENTS);
      console.log(
        `${clients.length * LINES} lines to ${clients.length} clients on ${INSTANCES} instances: ${
          seen.length * expected
        } deliveries in ${ms} ms`,
      );
    } finally {
      for (const { client } of clients) client[Symbol.dispose]();
      for (const server of servers) await server[Symbol.asyncDispose]();
    }
  },
});

Deno.test({
  name: "Redis room: two instances racing for one name, exactly one wins each time",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis);
    await using b = await instance(redis);
    const ca = await join(a);
    const cb = await join(b);
    try {
      // Each client's own name, so that its own rename is told from the other's
      // (the loser may hear the winner's rename before its own ERR).
      const own = ["ra", "rb"];
      await Promise.all([ca.send("/nick ra\n"), cb.send("/nick rb\n")]);
      await ca.lines.until((line) => line.endsWith(" is now ra"));
      await cb.lines.until((line) => line.endsWith(" is now rb"));
      for (let round = 0; round < 20; round++) {
        const name = `racer${round}`;
        await Promise.all([ca.send(`/nick ${name}\n`), cb.send(`/nick ${name}\n`)]);
        const answers = await within(
          5_000,
          `answers to /nick ${name}`,
          Promise.all(
            [ca, cb].map((c, i) =>
              c.lines.until((line) =>
                line === `ERR name taken: ${name}` || line === `* ${own[i]} is now ${name}`
              )
            ),
          ),
        );
        const winners = answers.filter((line) => !line.startsWith("ERR"));
        assert.equal(winners.length, 1, `round ${round}: ${answers.join(" | ")}`);
        own[answers[0].startsWith("ERR") ? 1 : 0] = name;
        // Lines of this round still unread (the winner's rename, heard by the
        // loser) match nothing of the next: they are passed over there.
      }
    } finally {
      ca[Symbol.dispose]();
      cb[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "Redis room: /list shows every instance's members, /msg and console /kick reach another instance",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using redis = await startRedis();
    await using a = await instance(redis);
    await using b = await instance(redis);
    const alice = await join(a);
    const bob = await join(b);
    const carol = await join(b);
    try {
      await alice.send("/nick alice\n");
      await within(5_000, "alice named", alice.until(/^\* user\d+ is now alice$/));
      // The renamed member is told at once; the room hears it through the stream,
      // where bob's rename could otherwise come first.
      await within(5_000, "alice's rename at carol", carol.until(/^\* user\d+ is now alice$/));
      await bob.send("/nick bob\n");
      await within(5_000, "bob's rename seen on a", alice.until(/^\* user\d+ is now bob$/));
      await within(5_000, "bob's rename at carol", carol.until(/^\* user\d+ is now bob$/));

      await alice.send("/list\n");
      const list: string[] = [];
      for (let line = await alice.line();; line = await alice.line()) {
        list.push(line!);
        if (/^\* \d+ clients?$/.test(line!)) break;
      }
      assert.equal(list.at(-1), "* 3 clients");
      assert.match(
        list.find((line) => line.includes("name=alice"))!,
        new RegExp(` instance=${a.seam.instance}$`),
      );
      assert.match(
        list.find((line) => line.includes("name=bob"))!,
        new RegExp(`age=\\d+ instance=${b.seam.instance}$`),
      );
      assert.ok(
        list.some((line) => / name=user\d+ .* instance=\d+$/.test(line)),
        "carol, by her default name",
      );

      await alice.send("/msg bob just for you\n");
      assert.equal(
        await within(5_000, "the private line", bob.until(/private/)),
        "<alice> (private) just for you",
      );
      await alice.send("everyone\n");
      assert.equal(
        await within(5_000, "carol's next line", carol.line()),
        "<alice> everyone",
        "carol got no private line",
      );
      assert.equal(await within(5_000, "bob's next line", bob.line()), "<alice> everyone");

      a.server.console("/kick bob");
      assert.equal(await within(5_000, "bob kicked", bob.until(/kicked/)), "* kicked by server");
      assert.equal(await within(5_000, "bob's EOF", bob.line()), null);
      await within(5_000, "the kick announced on a", alice.until("* bob left (kicked)"));
      await within(5_000, "b logs the kick", b.waitLog((line) => line.includes(" bob (kicked)")));
      assert.ok(a.logs.every((line) => !line.includes("no client")), "a found bob");
    } finally {
      for (const client of [alice, bob, carol]) client[Symbol.dispose]();
    }
  },
});

Deno.test({
  name:
    "server.ts --redis with a password: the room is shared with another instance and the password never logged",
  async fn() {
    await using redis = await startRedis("s3cret-pw");
    const script = runScript(
      "server.ts",
      ["--port", "0", "--redis", redis.url, "--room", "pw", "--no-console"],
      { serverLog: true },
    );
    const early: string[] = [];
    const listening = await within(
      10_000,
      "listening",
      script.stdout.until((line) => (early.push(line), line.startsWith("listening on "))),
    );
    const port = Number(/:(\d+) \(/.exec(listening)![1]);
    await using other = await instance(redis, "pw");
    try {
      const client = await connectTo(port);
      using _ = client;
      const near = await join(other);
      using _near = near;
      await within(5_000, "the other instance's client seen", client.until(/ joined$/));
      await client.send("over redis\n");
      assert.match(
        await within(5_000, "the line", near.until(/over redis/)),
        /^<user\d+> over redis$/,
      );
    } finally {
      script.child.kill("SIGTERM");
      const status = await within(10_000, "server exit", script.child.status);
      const log = [...early, ...await script.stdout.rest(), ...await script.stderr.rest()];
      assert.ok(status.success, log.join("\n"));
      assert.ok(log.every((line) => !line.includes("s3cret-pw")), "the password is never logged");
      assert.ok(log.some((line) => line.includes("redis://:****@127.0.0.1")), log.join("\n"));
    }
  },
});

// A shell makes the empty DENO_DIR (the suite has no --allow-write), runs
// the server in it, and when stopped counts what landed under npm/ there.
const IN_EMPTY_DENO_DIR = `
dir=$(mktemp -d)
DENO_DIR="$dir" "$0" run --quiet --cached-only --allow-net server.ts --port 0 --no-console &
pid=$!
trap 'kill "$pid"; wait "$pid"; echo "exit=$? npm-files=$(find "$dir" -path "*npm*" -type f | wc -l)"; rm -rf "$dir"; exit 0' TERM
wait "$pid"
echo "exit=$? npm-files=early"`;

Deno.test({
  name:
    "server.ts without --redis runs with an empty DENO_DIR and --cached-only: no package is fetched",
  async fn() {
    const shell = runProgram("bash", ["-c", IN_EMPTY_DENO_DIR, Deno.execPath()], {
      NO_COLOR: "1",
      PATH: Deno.env.get("PATH") ?? "",
    });
    try {
      await within(
        20_000,
        "listening",
        shell.stdout.until((line) => line.includes("listening on ")),
      );
    } finally {
      shell.child.kill("SIGTERM");
    }
    const end = await within(
      10_000,
      "the count",
      shell.stdout.until((line) => line.startsWith("exit=")),
    );
    assert.equal(end, "exit=0 npm-files=0");
    assert.ok((await within(10_000, "shell exit", finish(shell))).success);
  },
});

Deno.test("server.ts and udp_server.ts refuse bad --redis and --room flags with one line", async () => {
  for (
    const [script, args, message] of [
      ["server.ts", ["--redis", "http://x"], /Cannot parse --redis "http:\/\/x"/],
      ["server.ts", ["--redis", "redis://:pw@h:1", "--room", "a b"], /Cannot parse --room "a b"/],
      ["server.ts", ["--room", "x"], /--room names a room shared with --redis/],
      ["udp_server.ts", ["--redis", "redis://h:1", "--mode", "echo"], /--mode echo has none/],
    ] as const
  ) {
    const run = runScript(script, [...args]);
    const errors = await within(10_000, script, run.stderr.rest());
    const status = await run.child.status;
    await run.stdin.close().catch(() => {});
    await run.stdout.rest();
    assert.equal(status.code, 2, errors.join("\n"));
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], message);
  }
});
