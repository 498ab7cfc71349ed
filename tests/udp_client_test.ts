import assert from "node:assert/strict";
import {
  canonicalIp,
  DEFAULT_KEEPALIVE_S,
  LAST_REPLIES_WAITS,
  runUdpClient,
  type UdpClientOptions,
} from "../udp_client.ts";
import { EXIT_INTERRUPTED } from "../cli.ts";
import { DEFAULT_PEER_TIMEOUT_S, startUdpServer, type UdpServer } from "../udp_server.ts";
import { formatAddress } from "../cli.ts";
import { say } from "../protocol.ts";
import {
  bytes,
  LONG_LINES,
  LONG_LINES_RELAYED,
  NEEDS_SPAWN,
  runProgram,
  runScript,
  startScriptServer,
  streamSource,
  within,
} from "./util.ts";
import { freeUdpPort, LossyRelay, TestPeer } from "./udp_util.ts";

const decoder = new TextDecoder();

/** Piped input: all of `text`, then end of input. */
function pipedInput(text: string): { read(buffer: Uint8Array): Promise<number | null> } {
  let rest = bytes(text);
  return {
    read(buffer) {
      if (rest.length === 0) return Promise.resolve(null);
      const n = Math.min(buffer.length, rest.length);
      buffer.set(rest.subarray(0, n));
      rest = rest.subarray(n);
      return Promise.resolve(n);
    },
  };
}

/** Typed input: lines written by the test while the client runs. */
function typedInput() {
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  const writer = pipe.writable.getWriter();
  return {
    input: streamSource(pipe.readable),
    type: (line: string) => writer.write(bytes(line + "\n")),
    end: () => writer.close(),
  };
}

/** Runs the client in-process and collects what it prints and reports. */
async function runClient(
  options: Partial<UdpClientOptions> & { server: Deno.NetAddr },
  input: { read(buffer: Uint8Array): Promise<number | null> },
  onPrint: (line: string) => void = () => {},
): Promise<{ code: number; printed: string[]; status: string[] }> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const printed: string[] = [];
  const status: string[] = [];
  const code = await runUdpClient(socket, { waitMs: 50, ...options }, {
    input,
    print: (line) => {
      printed.push(line);
      onPrint(line);
    },
    status: (line) => status.push(line),
  });
  return { code, printed, status };
}

function echoServer(): UdpServer {
  return startUdpServer({ host: "127.0.0.1", port: 0, mode: "echo", log: () => {} });
}

function lines(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => String(from + i));
}

Deno.test("piped lines go out one datagram each and the replies are printed", async () => {
  const server = echoServer();
  try {
    const result = await runClient({ server: server.addr }, pipedInput("你好，世界\nsecond\n"));
    assert.deepEqual(result, { code: 0, printed: ["你好，世界", "second"], status: [] });
  } finally {
    await server.shutdown();
  }
});

Deno.test("a long Chinese line is split at character boundaries into datagrams of at most 256 bytes", async () => {
  using fake = new TestPeer();
  // 900 bytes: a piece of a long line is at most 254 bytes (room for a "/" in
  // front if it began with one), so 84 characters (252 bytes) go in each datagram.
  const line = "汉".repeat(300);
  const client = runClient({ server: fake.addr, waitMs: 0 }, pipedInput(line + "\n"));
  const received: Uint8Array[] = [];
  while (received.reduce((sum, d) => sum + d.length - 1, 0) < 900) {
    received.push((await fake.receiveFrom())[0]);
  }
  assert.deepEqual(received.map((d) => d.length), [253, 253, 253, 145]);
  assert.equal(received.map((d) => decoder.decode(d).replace(/\n$/, "")).join(""), line);
  assert.equal((await client).code, 0);
});

Deno.test("--expect-reply gets every answer from an echo server and counts them", async () => {
  const server = echoServer();
  try {
    const result = await runClient(
      { server: server.addr, expectReply: { timeoutMs: 1000, retries: 3 } },
      pipedInput(lines(1, 200).join("\n") + "\n"),
    );
    assert.deepEqual(result.printed, lines(1, 200));
    assert.deepEqual(result.status, ["sent 200, answered 200, lost 0"]);
    assert.equal(result.code, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("--expect-reply pointed at the chat room stops at its welcome, says why and leaves it", async () => {
  const left = Promise.withResolvers<void>();
  const log = (line: string) => /^left .* \(quit\)$/.test(line) && left.resolve();
  const server = startUdpServer({ host: "127.0.0.1", port: 0, log });
  try {
    const result = await runClient(
      { server: server.addr, expectReply: { timeoutMs: 1000, retries: 3 } },
      pipedInput(lines(1, 5).join("\n") + "\n"),
    );
    assert.equal(result.code, 1);
    assert.deepEqual(result.printed, []);
    assert.equal(result.status.length, 1);
    assert.match(result.status[0], /is a netchat chat room, where each request would join/);
    // It left the room it joined.
    await within(5000, "the client's /quit", left.promise);
    assert.equal(server.peerCount, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("through a relay that drops every 5th datagram both ways, retries recover every line", async () => {
  const server = echoServer();
  try {
    await using relay = new LossyRelay(server.addr, 5);
    const result = await runClient(
      { server: relay.addr, expectReply: { timeoutMs: 50, retries: 3 } },
      pipedInput(lines(1, 100).join("\n") + "\n"),
    );
    assert.deepEqual(result.printed, lines(1, 100));
    assert.equal(result.status.at(-1), "sent 100, answered 100, lost 0");
    assert.equal(result.code, 0);
    assert.ok(relay.dropped.toServer > 0 && relay.dropped.toClient > 0, "the relay dropped some");
  } finally {
    await server.shutdown();
  }
});

Deno.test("with no retries, the loss count through the relay is exact", async () => {
  const server = echoServer();
  try {
    await using relay = new LossyRelay(server.addr, 5);
    const result = await runClient(
      { server: relay.addr, expectReply: { timeoutMs: 200, retries: 0 } },
      pipedInput(lines(1, 50).join("\n") + "\n"),
    );
    // Requests 5, 10, ... 50 are dropped (10); of the 40 answers, every 5th is (8).
    assert.deepEqual(relay.dropped, { toServer: 10, toClient: 8 });
    assert.equal(result.status.at(-1), "sent 50, answered 32, lost 18");
    assert.equal(result.printed.length, 32);
    assert.deepEqual(result.printed, [...result.printed].sort((a, b) => Number(a) - Number(b)));
    assert.equal(result.code, 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("with nothing listening, --expect-reply says so after its tries and exits 1", async () => {
  const port = freeUdpPort();
  const result = await runClient(
    {
      server: { transport: "udp", hostname: "127.0.0.1", port },
      expectReply: { timeoutMs: 50, retries: 2 },
    },
    pipedInput("1\n2\n3\n"),
  );
  assert.deepEqual(result, {
    code: 1,
    printed: [],
    status: [`no reply from 127.0.0.1:${port} after 3 tries`],
  });
});

Deno.test("each request goes from a port of its own, so a late answer is never counted for the next", async () => {
  using fake = new TestPeer();
  const client = runClient(
    { server: fake.addr, expectReply: { timeoutMs: 100, retries: 1 } },
    pipedInput("x\nx\nx\n"),
  );
  const [, first] = await fake.receiveFrom();
  await fake.send(first, "x\n");
  // Request 2: same text, new port. A late copy of answer 1 to the old port must not count.
  const [, second] = await fake.receiveFrom();
  assert.notEqual(second.port, first.port);
  await fake.send(first, "x\n");
  const [, retry] = await fake.receiveFrom();
  assert.equal(retry.port, second.port, "a retry goes from the request's own port");
  // Request 3 is answered by a service that does not echo: any answer counts.
  const [, third] = await fake.receiveFrom();
  assert.ok(third.port !== first.port && third.port !== second.port);
  await fake.send(third, "OK 3\n");
  const result = await client;
  assert.deepEqual(result.printed, ["x", "OK 3"]);
  assert.deepEqual(result.status, ["sent 3, answered 2, lost 1"]);
  assert.equal(result.code, 1);
});

Deno.test("--expect-reply counts and shows the server's error answers", async () => {
  const server = echoServer();
  try {
    const input = new Uint8Array([0xff, 0x0a, ...bytes("ok\n")]);
    let given = false;
    const result = await runClient({
      server: server.addr,
      expectReply: { timeoutMs: 1000, retries: 0 },
    }, {
      read(buffer) {
        if (given) return Promise.resolve(null);
        given = true;
        buffer.set(input);
        return Promise.resolve(input.length);
      },
    });
    assert.deepEqual(result, {
      code: 0,
      printed: ["ERR invalid UTF-8", "ok"],
      status: ["sent 2, answered 2, lost 0"],
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("datagrams from anybody but the server are ignored", async () => {
  using fake = new TestPeer();
  using stranger = new TestPeer();
  const typed = typedInput();
  const real = Promise.withResolvers<void>();
  const client = runClient({ server: fake.addr }, typed.input, (line) => {
    if (line === "real") real.resolve();
  });
  await typed.type("hello");
  const [, clientAddr] = await fake.receiveFrom();
  await stranger.send(clientAddr, "INJECTED\n");
  await fake.send(clientAddr, "real\n");
  await real.promise;
  await typed.end();
  const result = await client;
  assert.deepEqual(result.printed, ["real"]);
  assert.deepEqual(result.status, [
    `udp_client.ts: ignoring datagrams from 127.0.0.1:${stranger.addr.port} (not the server)`,
  ]);
});

Deno.test("what the server sends is printed without control characters or escape sequences", async () => {
  using fake = new TestPeer();
  const typed = typedInput();
  const done = Promise.withResolvers<void>();
  const client = runClient({ server: fake.addr }, typed.input, (line) => {
    if (line === "end") done.resolve();
  });
  await typed.type("hi");
  const [, clientAddr] = await fake.receiveFrom();
  await fake.send(clientAddr, "\u001b]0;owned\u0007red\u001b[31m\nsecond line\r\n");
  // Longer than any netchat relay, as a server that is not netchat may send: shown whole.
  await fake.send(clientAddr, new Uint8Array(600).fill(0x41));
  await fake.send(clientAddr, "end\n");
  await done.promise;
  await typed.end();
  const result = await client;
  assert.deepEqual(result.printed, ["red", "second line", "A".repeat(600), "end"]);
  assert.deepEqual(result.status, []);
});

// Commands ignore case, as the server reads them: /QUIT is /quit too.
for (const quit of ["/quit", "/QUIT"]) {
  Deno.test(`interactive ${quit} sends ${quit} and exits without waiting for replies`, async () => {
    using fake = new TestPeer();
    const typed = typedInput();
    // A minute of --wait: if /quit waited for silence, the test would time out.
    const client = runClient({ server: fake.addr, waitMs: 60_000, interactive: true }, typed.input);
    await typed.type(quit);
    assert.equal(await fake.next(), quit);
    assert.equal((await client).code, 0);
    await typed.end();
  });
}

Deno.test("server addresses are matched however they are written", () => {
  const cases: [string, string][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["0.0.0.0", "127.0.0.1"],
    ["::", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["0::1", "::1"],
    ["FE80:0:0::1", "fe80::1"],
    ["fe80:0::1%lo", "fe80::1%lo"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::FFFF:7F00:1", "127.0.0.1"],
    ["::ffff:0.0.0.0", "127.0.0.1"],
    ["not:an:address", "not:an:address"],
  ];
  for (const [written, canonical] of cases) assert.equal(canonicalIp(written), canonical, written);
});

Deno.test("a send that fails is shown in one line and the client exits 1, even expecting no reply", async () => {
  // An IPv4 socket cannot send to ::1: the send fails at once (EAFNOSUPPORT), as
  // one to a network without a route would.
  const server: Deno.NetAddr = { transport: "udp", hostname: "::1", port: 9 };
  const failed = "udp_client.ts: cannot send to [::1]:9: this machine has that address " +
    "family, IPv4 or IPv6, turned off (address family not supported)";
  const piped = await runClient({ server }, pipedInput("你好\n"));
  assert.deepEqual(piped, { code: 1, printed: [], status: [failed] });
  // Joined: the join, the line and the /quit all fail, each said once.
  const joined = await runClient({ server, join: { keepaliveMs: 0 } }, pipedInput("你好\n"));
  assert.deepEqual(joined, { code: 1, printed: [], status: [failed, failed, failed] });
});

Deno.test("two clients chat with names and /list through the UDP server", async () => {
  const server = startUdpServer({ host: "127.0.0.1", port: 0, log: () => {} });
  try {
    const alice = typedInput();
    const aliceLines: string[] = [];
    let waiter: { match: string; found: () => void } | undefined;
    const seen = (match: string) =>
      new Promise<void>((found) => {
        if (aliceLines.includes(match)) return found();
        waiter = { match, found };
      });
    const aliceRun = runClient({ server: server.addr, name: "alice" }, alice.input, (line) => {
      aliceLines.push(line);
      if (line === waiter?.match) waiter.found();
    });
    await seen(say.welcome("alice"));
    const bob = await runClient(
      { server: server.addr, name: "bob" },
      pipedInput("你好 alice\n/list\n"),
    );
    assert.equal(bob.printed[0], say.welcome("bob"));
    assert.match(bob.printed[1], /^\* id=1 name=alice addr=127\.0\.0\.1:\d+ age=0 idle=0$/);
    assert.match(bob.printed[2], /^\* id=2 name=bob /);
    assert.equal(bob.printed[3], "* 2 peers");
    await seen("<bob> 你好 alice");
    await alice.type("/quit");
    assert.equal((await aliceRun).code, 0);
    await alice.end().catch(() => {});
    assert.ok(aliceLines.includes(say.joined("bob")));
  } finally {
    await server.shutdown();
  }
});

// ---- the script

const scriptPermissions = ["--allow-net"];

/** Runs udp_client.ts with `input` piped in; returns its exit code, stdout and stderr lines. */
async function runClientScript(args: string[], input: string) {
  const client = runScript("udp_client.ts", args, { permissions: scriptPermissions });
  await client.stdin.write(bytes(input));
  await client.stdin.close();
  const [stdout, stderr, status] = await Promise.all([
    client.stdout.rest(),
    client.stderr.rest(),
    client.child.status,
  ]);
  return { code: status.code, stdout, stderr };
}

async function stopScript(server: Awaited<ReturnType<typeof startScriptServer>>) {
  server.child.kill("SIGTERM");
  await server.child.status;
  await server.stdin.close().catch(() => {});
  await Promise.all([server.stdout.rest(), server.stderr.rest()]);
}

const SEQ_200 = lines(1, 200).join("\n") + "\n";

Deno.test({
  name: "seq 1 200 | udp_client.ts --expect-reply against udp_server.ts --mode echo",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startScriptServer("udp_server.ts", ["--mode", "echo"]);
    try {
      const result = await runClientScript(
        ["--port", String(server.port), "--expect-reply"],
        SEQ_200,
      );
      assert.deepEqual(result, {
        code: 0,
        stdout: lines(1, 200),
        stderr: ["sent 200, answered 200, lost 0"],
      });
    } finally {
      await stopScript(server);
    }
  },
});

Deno.test({
  name: "seq 1 200 through the lossy relay: every line with retries, the exact loss without",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startScriptServer("udp_server.ts", ["--mode", "echo"]);
    const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.port };
    try {
      {
        await using relay = new LossyRelay(target, 7);
        const result = await runClientScript(
          ["--port", String(relay.addr.port), "--expect-reply", "--timeout", "50"],
          SEQ_200,
        );
        assert.deepEqual(result.stdout, lines(1, 200));
        assert.equal(result.stderr.at(-1), "sent 200, answered 200, lost 0");
        assert.equal(result.code, 0);
      }
      {
        await using relay = new LossyRelay(target, 7);
        const result = await runClientScript(
          [
            "--port",
            String(relay.addr.port),
            "--expect-reply",
            "--timeout",
            "200",
            "--retries",
            "0",
          ],
          lines(1, 70).join("\n") + "\n",
        );
        // 10 of 70 requests dropped on the way; of 60 answers, 8 dropped on the way back.
        assert.deepEqual(relay.dropped, { toServer: 10, toClient: 8 });
        assert.deepEqual(result.stderr, ["sent 70, answered 52, lost 18"]);
        assert.equal(result.stdout.length, 52);
        assert.equal(result.code, 1);
      }
    } finally {
      await stopScript(server);
    }
  },
});

Deno.test({
  name: "udp_client.ts with no server: one line, exit 1; piped mode just waits and exits 0",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const port = String(freeUdpPort());
    const expecting = await runClientScript(
      ["--port", port, "--expect-reply", "--timeout", "50", "--retries", "2"],
      "hello\n",
    );
    assert.deepEqual(expecting, {
      code: 1,
      stdout: [],
      stderr: [`no reply from 127.0.0.1:${port} after 3 tries`],
    });
    const piped = await runClientScript(["--port", port, "--wait", "50"], "hello\n");
    assert.deepEqual(piped, { code: 0, stdout: [], stderr: [] });
  },
});

Deno.test({
  name: "udp_client.ts answers --help and bad flags with one line each",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const help = await runClientScript(["--help"], "");
    assert.equal(help.code, 0);
    const flags = [
      "--host",
      "--port",
      "--name",
      "--wait",
      "--join",
      "--keepalive",
      "--expect-reply",
    ];
    for (const flag of [...flags, "--timeout", "--retries"]) {
      assert.ok(help.stdout.some((line) => line.trimStart().startsWith(flag)), flag);
    }
    const cases: [string[], string][] = [
      [["--timeout", "5"], "--timeout needs --expect-reply"],
      [["--port", "0"], 'Cannot parse --port "0": must be a whole number from 1 to 65535'],
      [
        ["--expect-reply", "--retries", "many"],
        'Cannot parse --retries "many": must be a whole number from 0 to 100',
      ],
      [
        ["--expect-reply", "--name", "alice"],
        "--name cannot be used with --expect-reply (/nick would be a request)",
      ],
      [["--name", "server"], 'Cannot use --name "server": name reserved: server'],
      [
        ["--expect-reply", "--join"],
        "--join cannot be used with --expect-reply (each request is a new peer)",
      ],
      [["--expect-reply", "--keepalive", "5"], "--keepalive cannot be used with --expect-reply"],
      [["--keepalive", "5"], "--keepalive needs --join when the input is not a terminal"],
      [
        ["--join", "--keepalive", "soon"],
        'Cannot parse --keepalive "soon": must be seconds from 0 (never), at most 86400',
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runClientScript(args, "");
      assert.deepEqual(result, {
        code: 2,
        stdout: [],
        stderr: [`udp_client.ts: ${message} (see --help)`],
      }, args.join(" "));
    }
  },
});

// ---- lines too long for one datagram

Deno.test("a long line goes out as text in every datagram: / before each piece that begins with /", async () => {
  using fake = new TestPeer();
  const client = runClient({ server: fake.addr, waitMs: 0 }, pipedInput(LONG_LINES.join("\n")));
  const received: string[] = [];
  for (let i = 0; i < LONG_LINES_RELAYED.length + 1; i++) received.push(await fake.next());
  assert.deepEqual(received, [
    "x".repeat(254),
    "x/nick hijacked",
    "/".repeat(255),
    "/".repeat(255),
    "/".repeat(93),
    "y".repeat(254),
    "//quit",
    "//quit", // typed so: sent as typed
    "z".repeat(254),
    "z/quit",
    "a".repeat(250),
    "🇧🇪👨‍👩‍👧‍👦👋🏽e\u0301",
    "/nick carol",
  ]);
  for (const text of received) assert.ok(bytes(text).length <= 255, text);
  assert.equal((await client).code, 0);
});

Deno.test({
  name: "udp_client.ts sends every piece of a long line as text: no piece renames or quits",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = startUdpServer({ host: "127.0.0.1", port: 0, log: () => {} });
    using observer = new TestPeer();
    try {
      await observer.send(server.addr, "/nick observer");
      assert.equal(await observer.next(), say.welcome("observer"));
      const client = await runClientScript(
        ["--port", String(server.addr.port), "--wait", "50"],
        LONG_LINES.join("\n") + "\n",
      );
      assert.equal(client.code, 0);
      // The server answers datagrams in order: once the help has come, every
      // datagram of the client has been handled.
      await observer.send(server.addr, "/help");
      const seen: string[] = [];
      while (seen.at(-1) !== say.help.at(-1)) seen.push(await observer.next());
      const notices = seen.filter((text) => text.startsWith("* ") && !say.help.includes(text));
      assert.deepEqual(notices, [say.joined("user2"), say.renamed("user2", "carol")]);
      const texts = seen.filter((text) => text.startsWith("<user2> ")).map((text) => text.slice(8));
      assert.deepEqual(texts, LONG_LINES_RELAYED);
    } finally {
      await server.shutdown();
    }
  },
});

// ---- a member for the whole session: at a terminal, or --join

/** Lines as they come (a server's log, a client's output), which a test can wait for. */
class Lines {
  readonly all: string[] = [];
  #waiters: { check: () => boolean }[] = [];

  /** Adds a line; a bound function, to pass as a log or print callback. */
  push = (line: string): void => {
    this.all.push(line);
    this.#waiters = this.#waiters.filter((waiter) => !waiter.check());
  };

  /**
   * Resolves with the `count`-th line, past or future, that is `match` (or
   * matches it); fails after 5 s.
   */
  waitFor(match: string | RegExp, count = 1): Promise<string> {
    const matches = (line: string) => typeof match === "string" ? line === match : match.test(line);
    const found = new Promise<string>((resolve) => {
      const check = () => {
        const seen = this.all.filter(matches);
        if (seen.length < count) return false;
        resolve(seen[count - 1]);
        return true;
      };
      if (!check()) this.#waiters.push({ check });
    });
    return within(5000, `line ${count} matching ${match}`, found);
  }

  count(match: string): number {
    return this.all.filter((line) => line === match).length;
  }
}

/** Starts the client in-process; the test can wait on what it prints and reports. */
function startClient(
  options: Partial<UdpClientOptions> & { server: Deno.NetAddr },
  input: { read(buffer: Uint8Array): Promise<number | null> },
) {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const printed = new Lines();
  const status = new Lines();
  const code = runUdpClient(socket, { waitMs: 50, ...options }, {
    input,
    print: printed.push,
    status: status.push,
  });
  return { at: formatAddress(socket.addr), printed, status, code };
}

/** A chat room on 127.0.0.1 whose log the test can wait on. */
function chatServer(options: { peerTimeoutMs?: number } = {}) {
  const log = new Lines();
  const server = startUdpServer({ host: "127.0.0.1", port: 0, ...options, log: log.push });
  return { server, log };
}

Deno.test("joining, the client is in the room and welcomed before it sends a line", async () => {
  const { server, log } = chatServer();
  const typed = typedInput();
  try {
    const client = startClient({ server: server.addr, join: { keepaliveMs: 0 } }, typed.input);
    await client.printed.waitFor(say.welcome("user1"));
    assert.equal(server.peerCount, 1);
    // The join was an empty datagram: nothing typed, nothing relayed.
    assert.deepEqual(log.all.filter((line) => line.startsWith(`datagram from ${client.at}`)), [
      `datagram from ${client.at}: 0 bytes`,
    ]);
    // At the end of the input it leaves by itself, rather than wait for the peer timeout.
    await typed.end();
    await log.waitFor(`left ${client.at} id=1 user1 (quit)`);
    assert.equal(await client.code, 0);
    assert.deepEqual(client.status.all, []);
  } finally {
    await server.shutdown();
  }
});

Deno.test("joining with --name, the join is /nick NAME: the room announces the name once", async () => {
  const { server } = chatServer();
  using observer = new TestPeer();
  const typed = typedInput();
  try {
    await observer.send(server.addr, "/nick observer");
    assert.equal(await observer.next(), say.welcome("observer"));
    const client = startClient(
      { server: server.addr, name: "小明", join: { keepaliveMs: 0 } },
      typed.input,
    );
    await client.printed.waitFor(say.welcome("小明"));
    await typed.type("你好");
    // Joined under the name: no "* user2 joined", no rename.
    assert.equal(await observer.next(), say.joined("小明"));
    assert.equal(await observer.next(), "<小明> 你好");
    await typed.end();
    assert.equal(await observer.next(), say.left("小明", "quit"));
    assert.equal(await client.code, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("joined, keepalives keep a silent reader in a room that forgets silent peers after 0.5 s", async () => {
  const { server, log } = chatServer({ peerTimeoutMs: 500 });
  using silent = new TestPeer();
  const typed = typedInput();
  try {
    const client = startClient({ server: server.addr, join: { keepaliveMs: 100 } }, typed.input);
    await client.printed.waitFor(say.welcome("user1"));
    // A peer that joins and then says nothing is forgotten: the timeout is live.
    await silent.send(server.addr, "");
    await log.waitFor(`left ${formatAddress(silent.addr)} id=2 user2 (idle timeout)`);
    // Three more peer timeouts' worth of keepalives (0.1 s apart): still a member.
    const keepalive = `datagram from ${client.at}: 0 bytes`;
    await log.waitFor(keepalive, log.count(keepalive) + 15);
    assert.equal(server.peerCount, 1);
    assert.ok(!log.all.some((line) => line.startsWith(`left ${client.at} `)), "not timed out");
    await typed.end();
    await log.waitFor(`left ${client.at} id=1 user1 (quit)`);
    assert.equal(await client.code, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("the default keepalive leaves room for four lost keepalives within the default peer timeout", () => {
  assert.ok(DEFAULT_KEEPALIVE_S * 5 <= DEFAULT_PEER_TIMEOUT_S);
});

Deno.test("joined, a server that never answers gets one line, and a later answer is still shown", async () => {
  using mute = new TestPeer(); // bound, so no ICMP either: it just never answers
  const typed = typedInput();
  const client = startClient(
    { server: mute.addr, join: { keepaliveMs: 0, answerWaitMs: 50 } },
    typed.input,
  );
  const [join, from] = await mute.receiveFrom();
  assert.equal(join.length, 0, "the join is an empty datagram");
  const warning = `udp_client.ts: no answer from 127.0.0.1:${mute.addr.port} in 0.05 s ` +
    `(is a netchat UDP server listening there?)`;
  assert.equal(await client.status.waitFor(/no answer/), warning);
  await mute.send(from, "late\n");
  await client.printed.waitFor("late");
  await typed.end();
  assert.equal(await mute.next(), "/quit");
  assert.equal(await client.code, 0);
  assert.deepEqual(client.status.all, [warning]);
  assert.deepEqual(client.printed.all, ["late"]);
});

Deno.test("joined to an echo service, the echoed join and keepalives print nothing", async () => {
  const log = new Lines();
  const server = startUdpServer({ host: "127.0.0.1", port: 0, mode: "echo", log: log.push });
  const typed = typedInput();
  try {
    const client = startClient(
      { server: server.addr, join: { keepaliveMs: 20, answerWaitMs: 5000 } },
      typed.input,
    );
    await log.waitFor(`datagram from ${client.at}: 0 bytes`, 5);
    await typed.type("你好");
    await client.printed.waitFor("你好");
    await typed.end();
    // Echoed keepalives (every 20 ms) are not the server talking: --wait (50 ms) still ends.
    assert.equal(await within(5000, "the end of --wait", client.code), 0);
    // The echo of the /quit sent at the end may come before the socket closes.
    assert.deepEqual(client.printed.all.filter((line) => line !== "/quit"), ["你好"]);
    assert.deepEqual(client.status.all, [], "the echoed join counts as an answer");
  } finally {
    await server.shutdown();
  }
});

Deno.test("joined, Ctrl-C sends /quit and ends the client with 130 at once", async () => {
  using fake = new TestPeer();
  const typed = typedInput();
  const interrupt = new AbortController();
  const client = startClient({
    server: fake.addr,
    waitMs: 60_000,
    join: { keepaliveMs: 0 },
    interrupt: interrupt.signal,
  }, typed.input);
  assert.equal(await fake.next(), "");
  await typed.type("hi");
  assert.equal(await fake.next(), "hi");
  interrupt.abort();
  assert.equal(await fake.next(), "/quit");
  assert.equal(await client.code, EXIT_INTERRUPTED);
  await typed.end();
});

Deno.test({
  name: "udp_client.ts from a pipe without --join sends its lines and nothing else",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    using fake = new TestPeer();
    using marker = new TestPeer();
    const result = await runClientScript(
      ["--port", String(fake.addr.port), "--wait", "50"],
      "hi\n",
    );
    assert.deepEqual(result, { code: 0, stdout: [], stderr: [] });
    // All it sent is queued at the fake by now: no join before the line, no /quit after it.
    await marker.send(fake.addr, "marker");
    assert.deepEqual([await fake.next(), await fake.next()], ["hi", "marker"]);
  },
});

Deno.test({
  name: "udp_client.ts --join: SIGINT makes the room say it left (quit), exit 130",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const { server, log } = chatServer();
    const client = runScript("udp_client.ts", ["--port", String(server.addr.port), "--join"], {
      permissions: scriptPermissions,
    });
    try {
      // The input stays open: only the signal can end this client.
      assert.equal(await client.stdout.line(), say.welcome("user1"));
      client.child.kill("SIGINT");
      await log.waitFor(/^left 127\.0\.0\.1:\d+ id=1 user1 \(quit\)$/);
      const status = await client.child.status;
      assert.deepEqual({ code: status.code, signal: status.signal }, { code: 130, signal: null });
      assert.deepEqual(await client.stderr.rest(), []);
    } finally {
      await client.stdin.close().catch(() => {});
      await server.shutdown();
    }
  },
});

/**
 * Runs a command in a new pseudo-terminal (python3's pty module): its output,
 * echo and all, comes out on stdout; what the test writes to stdin is typed
 * at the terminal (so "\x03" is Ctrl-C), and the end of stdin hangs the
 * terminal up (SIGHUP), so a failed test cannot leave the command running.
 * Exits with the command's code.
 */
const PTY_RUNNER = `
import os, pty, select, sys
pid, terminal = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
keyboard = sys.stdin.fileno()
sources = [terminal, keyboard]
while True:
    ready, _, _ = select.select(sources, [], [])
    if keyboard in ready:
        typed = os.read(keyboard, 1024)
        if not typed:
            break
        os.write(terminal, typed)
    if terminal in ready:
        try:
            shown = os.read(terminal, 1024)
        except OSError:  # EIO: the command has gone, and the terminal with it
            shown = b""
        if not shown:
            break
        os.write(1, shown)
os.close(terminal)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`;

Deno.test({
  name: "udp_client.ts at a terminal joins without any flag, and Ctrl-C leaves the room",
  ignore: NEEDS_SPAWN, // python3 is one of the peers .ci/run installs: missing, it fails
  fn: async () => {
    const { server, log } = chatServer();
    const client = runProgram("python3", [
      "-c",
      PTY_RUNNER,
      Deno.execPath(),
      "run",
      "--quiet",
      ...scriptPermissions,
      "udp_client.ts",
      "--port",
      String(server.addr.port),
    ], { NO_COLOR: "1" });
    try {
      // The terminal ends lines with "\r\n"; the prompt (terminal.ts) redraws
      // itself around each line with cursor movements, which are taken out.
      const cursorMoves = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;]*[A-Za-z]`, "g");
      const shown = (text: string) => (line: string) =>
        line.replace(cursorMoves, "").replace(/\r$/, "").endsWith(text);
      await within(10_000, "the welcome", client.stdout.until(shown(say.welcome("user1"))));
      const joined = await log.waitFor(/^joined /);
      const at = joined.split(" ")[1];
      assert.deepEqual(log.all.filter((line) => line.startsWith(`datagram from ${at}`)), [
        `datagram from ${at}: 0 bytes`,
      ]);
      await client.stdin.write(bytes("\x03")); // Ctrl-C, as typed
      await log.waitFor(`left ${at} id=1 user1 (quit)`);
      assert.equal((await within(10_000, "the exit", client.child.status)).code, 130);
    } finally {
      await client.stdin.close().catch(() => {});
      await Promise.all([client.stdout.rest(), client.stderr.rest()]);
      await server.shutdown();
    }
  },
});

Deno.test("joined, a client the room lets go (kicked, timed out) stops rather than join again", async () => {
  for (const [how, goodbye] of [["kick", say.kicked], ["idle", say.idle]] as const) {
    const { server, log } = chatServer({ peerTimeoutMs: how === "idle" ? 300 : undefined });
    const typed = typedInput();
    try {
      // Keepalives slower than the timeout (idle) or frequent (kick): either would rejoin.
      const keepaliveMs = how === "idle" ? 1000 : 50;
      const client = startClient({ server: server.addr, join: { keepaliveMs } }, typed.input);
      await client.printed.waitFor(say.welcome("user1"));
      if (how === "kick") server.console("/kick 1");
      await client.printed.waitFor(goodbye);
      assert.equal(await within(5000, "the client's end", client.code), 0);
      assert.deepEqual(client.status.all, [
        "udp_client.ts: the server ended our membership: not joining again",
      ]);
      assert.equal(server.peerCount, 0, `${how}: not a member again`);
      assert.ok(!log.all.some((line) => line.includes("id=2")), `${how}: no second join`);
    } finally {
      await typed.end();
      await server.shutdown();
    }
  }
});

/** A peer in the room that says something every `everyMs` until disposed: the room is never silent. */
async function chattyPeer(server: UdpServer, everyMs: number) {
  const peer = new TestPeer();
  await peer.send(server.addr, "/nick chatty");
  assert.equal(await peer.next(), say.welcome("chatty"));
  let n = 0;
  const timer = setInterval(() => peer.send(server.addr, `line ${++n}`).catch(() => {}), everyMs);
  return {
    [Symbol.dispose]() {
      clearInterval(timer);
      peer[Symbol.dispose]();
    },
  };
}

Deno.test("joined, at the end of the input in a busy room it sends /quit first and stops at the room's * bye", async () => {
  const { server, log } = chatServer();
  try {
    using _chatty = await chattyPeer(server, 50);
    const started = performance.now();
    // Silence of 2 s never comes here: only the room's "* bye" can end the wait in time.
    const client = startClient(
      { server: server.addr, waitMs: 2000, join: { keepaliveMs: 0 } },
      pipedInput("hi\n"),
    );
    await client.printed.waitFor(say.welcome("user2"));
    assert.equal(await within(1900, "the client's end", client.code), 0);
    assert.ok(performance.now() - started < 2000, "ended by the bye, not by the wait");
    assert.equal(client.printed.all.at(-1), say.bye);
    await log.waitFor(`left ${client.at} id=2 user2 (quit)`);
    assert.equal(server.peerCount, 1);
    assert.deepEqual(client.status.all, []);
  } finally {
    await server.shutdown();
  }
});

Deno.test("at the end of piped input in a busy room, the wait for replies ends at 3 x --wait in all", async () => {
  const { server } = chatServer();
  try {
    using _chatty = await chattyPeer(server, 30);
    const waitMs = 150;
    const started = performance.now();
    // Not joined: no /quit, so no "* bye"; the room's lines keep restarting the silence.
    const client = startClient({ server: server.addr, waitMs }, pipedInput("hi\n"));
    assert.equal(await within(5000, "the client's end", client.code), 0);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= LAST_REPLIES_WAITS * waitMs - 5, `ended after ${elapsed} ms`);
    assert.ok(client.printed.all.some((line) => line.startsWith("<chatty> line ")));
  } finally {
    await server.shutdown();
  }
});
