/**
 * In-process tests of client.ts: runClient() over real sockets on 127.0.0.1,
 * with stdin and stdout replaced by test doubles.
 */
import assert from "node:assert/strict";
import {
  EXIT_CONNECTION_LOST,
  Outgoing,
  RECONNECT_MAX_MS,
  reconnectDelay,
  runClient,
  runSession,
} from "../client.ts";
import { parseAddressRange } from "../access.ts";
import { Password } from "../auth.ts";
import { writeAll } from "../line_buffer.ts";
import { startServer } from "../server.ts";
import {
  bytes,
  finish,
  join,
  LineReader,
  LONG_LINES,
  LONG_LINES_RELAYED,
  NEEDS_SPAWN,
  runProgram,
  runScript,
  startScriptServer,
  TestServer,
  within,
} from "./util.ts";

/** Stands in for stdin: hands out the chunks it is given, ends when told. */
class Input {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #wake?: () => void;

  type(text: string): void {
    this.#chunks.push(bytes(text));
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks.shift()!;
    buffer.set(chunk);
    return chunk.length;
  }
}

/** Stands in for stdout and stderr, and lets a test wait for a printed line. */
class Output {
  printed: string[] = [];
  statuses: string[] = [];
  #waiters: (() => void)[] = [];

  print = (line: string) => {
    this.printed.push(line);
    this.#waiters.splice(0).forEach((wake) => wake());
  };

  status = (line: string) => {
    this.statuses.push(line);
  };

  async waitFor(count: number): Promise<void> {
    while (this.printed.length < count) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

async function connect(port: number): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

Deno.test("client sends piped lines, prints the echoes, half-closes and exits 0", async () => {
  const server = startServer({ port: 0, mode: "echo", log: () => {} });
  try {
    const input = new Input();
    const output = new Output();
    input.type("hi\n你好");
    input.type("，世界\nlast line without newline");
    input.end();
    const code = await runClient(await connect(server.addr.port), { input, ...output });
    assert.equal(code, 0);
    assert.deepEqual(output.printed, ["hi", "你好，世界", "last line without newline"]);
    // We closed first, so this is no surprise worth a status line.
    assert.deepEqual(output.statuses, []);
  } finally {
    await server.shutdown();
  }
});

Deno.test("client splits a long line into messages of at most 255 bytes and loses nothing", async () => {
  const server = startServer({ port: 0, mode: "echo", log: () => {} });
  try {
    const input = new Input();
    const output = new Output();
    const long = "界".repeat(300) + "x".repeat(300); // 1200 bytes
    input.type(long + "\n");
    input.end();
    assert.equal(await runClient(await connect(server.addr.port), { input, ...output }), 0);
    assert.ok(output.printed.length >= 5);
    for (const piece of output.printed) assert.ok(bytes(piece).length <= 255, piece);
    assert.equal(output.printed.join(""), long);
  } finally {
    await server.shutdown();
  }
});

/**
 * A raw server for one connection: runs `script` with the accepted socket and
 * its line reader, then closes.
 */
async function withRawServer(
  script: (conn: Deno.TcpConn, lines: LineReader) => Promise<void>,
  client: (port: number) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    try {
      await script(conn, new LineReader(conn));
    } finally {
      try {
        conn.close();
      } catch {
        // the script closed it
      }
    }
  })();
  try {
    await client(listener.addr.port);
  } finally {
    listener.close();
    await serving;
  }
}

Deno.test("client never prints control characters from the network, whatever the server sends", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn) => {
    await conn.write(bytes("\x1b[2J\x1b]0;pwned\x07clear\u009b1m\r\nok\x00\x7f\n\xff\n"));
    await conn.write(new Uint8Array([0x61, 0xff, 0x1b, 0x62, 0x0a]));
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  // Changed: whole sequences go, so "[2J", "]0;pwned" and "1m" no longer show,
  // and ESC b (a complete escape sequence) takes its b along.
  assert.deepEqual(output.printed, ["clear", "ok", "ÿ", "a\ufffd"]);
});

Deno.test("client prints a raw client's arrow keys, colours and forged lines as plain text", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn) => {
    await conn.write(bytes(
      "<alice> \x1b[A\x1b[Dagain\n" +
        "<bob> \x1b[31mred\x1b[0m 你好\n" +
        "<carol> \x1bOA\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\\n" +
        "<dave> hi\u2028* alice left (quit)\u2029\u0085ok\n" +
        "<eve> \x1bP+q544e\x1b\\\x1b7\x1b(B😀\x1b]0;unterminated\n",
    ));
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  assert.deepEqual(output.printed, [
    "<alice> again",
    "<bob> red 你好",
    "<carol> click",
    "<dave> hi* alice left (quit)ok",
    "<eve> 😀",
  ]);
});

Deno.test("client says the server closed first and exits 0", async () => {
  const output = new Output();
  const input = new Input(); // the user is still typing: stdin stays open
  await withRawServer(async (conn) => {
    await conn.write(bytes("* bye\n"));
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  assert.deepEqual(output.printed, ["* bye"]);
  assert.deepEqual(output.statuses, ["connection closed by server"]);
});

Deno.test("client shows the server's last line even without its newline, as nc does", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn) => {
    await conn.write(bytes("first\nprompt> "));
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  assert.deepEqual(output.printed, ["first", "prompt> "]);
  assert.deepEqual(output.statuses, ["connection closed by server"]);
});

Deno.test("client whose output is closed (| head) ends quietly with 0", async () => {
  const input = new Input();
  const statuses: string[] = [];
  let printed = 0;
  await withRawServer(async (conn) => {
    await conn.write(bytes("one\ntwo\nthree\n"));
  }, async (port) => {
    const code = await runClient(await connect(port), {
      input,
      print: () => {
        if (++printed > 1) throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      },
      status: (line) => statuses.push(line),
    });
    assert.equal(code, 0);
  });
  input.end();
  assert.equal(printed, 2, "nothing is printed after the pipe broke");
  assert.deepEqual(statuses, []);
});

Deno.test("client sends /nick for --name, and /quit (any case) half-closes but still prints the reply", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn, lines) => {
    assert.equal(await lines.line(), "/nick alice");
    assert.equal(await lines.line(), "/QUIT");
    // The client's FIN: nothing more comes from it, though stdin is still open.
    assert.equal(await lines.line(), null);
    await conn.write(bytes("* bye\n"));
  }, async (port) => {
    input.type("/QUIT\n"); // commands ignore case, as the server reads them
    assert.equal(await runClient(await connect(port), { input, ...output }, "alice"), 0);
  });
  input.end();
  assert.deepEqual(output.printed, ["* bye"]);
  assert.deepEqual(output.statuses, []);
});

Deno.test("client drops an incoming line over its bound with a status line and keeps the rest", async () => {
  const output = new Output();
  const input = new Input();
  const atBound = "界".repeat(21_845) + "x"; // 65,536 bytes: the bound exactly
  await withRawServer(async (conn) => {
    await writeAll(
      conn,
      bytes(
        `${"<a> ".padEnd(386, "x")}\n${"y".repeat(600)}\n${atBound}\n${atBound}z\r\nafter\n`,
      ),
    );
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  // 386 bytes is the longest relay a netchat server can send: it must get through.
  // Changed: the bound is 64 KiB now, so the 600-byte line is shown too.
  assert.equal(output.printed.length, 4);
  assert.equal(bytes(output.printed[0]).length, 386);
  assert.equal(output.printed[1], "y".repeat(600));
  assert.equal(output.printed[2], atBound);
  assert.equal(output.printed[3], "after");
  assert.deepEqual(output.statuses, [
    "client.ts: dropped a line over 65536 bytes from the server",
    "connection closed by server",
  ]);
});

Deno.test({
  name: "client.ts prints a 60 KB line from any line-based service and drops a 70 KB one",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = runScript("client.ts", ["--port", String(listener.addr.port)]);
    // 60,000 and 70,000 bytes of Chinese and emoji, so a cut character would show.
    const line60k = "网络聊天😀".repeat(3_750);
    const line70k = "网络聊天😀".repeat(4_375);
    assert.equal(bytes(line60k).length, 60_000);
    assert.equal(bytes(line70k).length, 70_000);
    try {
      const conn = await listener.accept();
      try {
        await writeAll(conn, bytes(`before\n${line60k}\n${line70k}\nafter\n`));
      } finally {
        conn.close(); // our FIN: the client prints what it has and exits 0
      }
      assert.deepEqual(await client.stdout.rest(), ["before", line60k, "after"]);
      assert.match((await client.stderr.line())!, /^connected to 127\.0\.0\.1:\d+ from /);
      assert.deepEqual(await client.stderr.rest(), [
        "client.ts: dropped a line over 65536 bytes from the server",
        "connection closed by server",
      ]);
    } finally {
      listener.close();
      assert.equal((await finish(client)).code, 0);
    }
  },
});

Deno.test("client shows incoming lines while the user has not finished typing (full duplex)", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn, lines) => {
    await conn.write(bytes("first\n"));
    // The client prints this before the user has typed anything.
    assert.equal(await lines.line(), "typed after seeing first");
    await conn.write(bytes("second\n"));
  }, async (port) => {
    const running = runClient(await connect(port), { input, ...output });
    await output.waitFor(1);
    input.type("typed after seeing first\n");
    await output.waitFor(2);
    assert.equal(await running, 0);
  });
  input.end();
  assert.deepEqual(output.printed, ["first", "second"]);
});

// ---- lines too long for one message, through the scripts

Deno.test({
  name: "client.ts sends every piece of a long line as text: no piece renames, quits or errs",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    await using server = new TestServer();
    using observer = await join(server);
    const client = runScript("client.ts", ["--port", String(server.port)]);
    try {
      await observer.until("* user2 joined");
      await client.stdin.write(bytes(LONG_LINES.join("\n") + "\n"));
      await client.stdin.close();
      const relayed = LONG_LINES_RELAYED;
      const seen: string[] = [];
      for (let line = await observer.line(); line !== null; line = await observer.line()) {
        seen.push(line);
        if (line.includes(" left (")) break;
      }
      // No piece ran as a command: only the last line renamed, and the end of input ended.
      const notices = seen.filter((line) => line.startsWith("* "));
      assert.deepEqual(notices, ["* user2 is now carol", "* carol left (eof)"]);
      const texts = seen.filter((line) => line.startsWith("<user2> ")).map((line) => line.slice(8));
      assert.deepEqual(texts, relayed);
    } finally {
      assert.equal((await finish(client)).code, 0);
    }
  },
});

Deno.test({
  name: "client.ts prints a long line typed at server.ts's console as text in every piece",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startScriptServer("server.ts");
    const client = runScript("client.ts", ["--port", String(server.port)]);
    try {
      assert.match((await client.stdout.line())!, /^\* welcome, you are user1 /);
      const typed = [
        "x".repeat(255) + "/quit", // the second piece is not a shutdown
        "y".repeat(254) + "/kick 1", // nor a kick
        "/".repeat(600),
        "//list", // typed text beginning with /
      ];
      await server.stdin.write(bytes(typed.join("\n") + "\n"));
      const relayed = [
        "x".repeat(254),
        "x/quit",
        "y".repeat(254),
        "/kick 1",
        "/".repeat(254),
        "/".repeat(254),
        "/".repeat(92),
        "/list",
      ].map((text) => `<server> ${text}`);
      await server.stdin.write(bytes("/quit\n")); // a console line that fits is a command
      // Only that /quit shut the server down, and nobody was kicked before it.
      assert.deepEqual(await client.stdout.rest(), [...relayed, "* server shutting down"]);
    } finally {
      assert.equal((await finish(client)).code, 0);
      assert.equal((await finish(server)).code, 0);
    }
  },
});

/** Accepts one connection, sends a line, then aborts it with RST (SO_LINGER 0); prints its port. */
const RESETTING_SERVER = `
import socket, struct
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"* hello\\n")
c.recv(1)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
`;

Deno.test({
  name: "client tells a server that vanished (reset) from one that closed: message and exit 3",
  ignore: NEEDS_SPAWN,
  async fn() {
    const server = runProgram("python3", ["-c", RESETTING_SERVER]);
    const port = Number(await server.stdout.line());
    const input = new Input();
    const output = new Output();
    const running = runClient(await connect(port), { input, ...output });
    await output.waitFor(1);
    input.type("x\n"); // the server resets once it has read a byte
    assert.equal(await running, EXIT_CONNECTION_LOST);
    assert.deepEqual(output.printed, ["* hello"]);
    assert.deepEqual(output.statuses, ["connection lost: reset by the server"]);
    input.end();
    assert.equal((await finish(server)).code, 0);
  },
});

Deno.test("reconnectDelay doubles from 0.5 s to at most 30 s, each between half and all of it", () => {
  const ceilings = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
  ceilings.forEach((ceiling, attempt) => {
    assert.equal(reconnectDelay(attempt, () => 0), ceiling / 2);
    assert.equal(reconnectDelay(attempt, () => 1), ceiling);
  });
  assert.equal(reconnectDelay(1000, () => 1), RECONNECT_MAX_MS);
});

Deno.test({
  name:
    "client.ts --reconnect comes back to a restarted server, takes its name, then ends with input",
  ignore: NEEDS_SPAWN,
  async fn() {
    const first = await startScriptServer("server.ts");
    const client = runScript("client.ts", [
      "--port",
      String(first.port),
      "--name",
      "dave",
      "--reconnect",
    ]);
    await first.stdout.until((line) => line.includes("-> dave"));
    first.child.kill("SIGTERM");
    assert.equal((await first.child.status).code, 0);
    await Promise.all([first.stdout.rest(), first.stderr.rest()]);
    assert.match(
      await client.stderr.until((line) => line.startsWith("connection closed")),
      /^connection closed by server; reconnecting in \d\.\d s \(--reconnect\)$/,
    );
    const second = runScript("server.ts", ["--port", String(first.port)]);
    try {
      // Back under the same name, and a line piped in now reaches the new room.
      await within(10_000, "dave back", second.stdout.until((line) => line.includes("-> dave")));
      assert.match(
        await client.stderr.until((l) => l.startsWith("reconnected")),
        /^reconnected to 127\.0\.0\.1:/,
      );
      await client.stdin.write(bytes("still here\n"));
      await second.stdout.until((line) => line.endsWith("<dave> still here"));
      // End of input: the usual half-close, and no more reconnecting.
      await client.stdin.close();
      assert.equal((await client.child.status).code, 0);
      await second.stdout.until((line) => line.endsWith("dave (eof)"));
    } finally {
      second.child.kill("SIGTERM");
      await second.child.status;
      await Promise.all([
        second.stdout.rest(),
        second.stderr.rest(),
        client.stdout.rest(),
        client.stderr.rest(),
      ]);
    }
  },
});

Deno.test({
  name: "client.ts --reconnect stops when its input ends while the server is away",
  ignore: NEEDS_SPAWN,
  async fn() {
    const server = await startScriptServer("server.ts");
    const client = runScript("client.ts", ["--port", String(server.port), "--reconnect"]);
    await server.stdout.until((line) => line.includes("connected 127.0.0.1"));
    server.child.kill("SIGTERM");
    await server.child.status;
    await client.stderr.until((line) => line.includes("reconnecting in"));
    await client.stdin.close();
    assert.equal(
      await client.stderr.until((l) => l.startsWith("input ended")),
      "input ended: not reconnecting",
    );
    assert.equal((await client.child.status).code, 0);
    await Promise.all([
      server.stdout.rest(),
      server.stderr.rest(),
      client.stdout.rest(),
      client.stderr.rest(),
    ]);
  },
});

Deno.test({
  name: "client.ts --reconnect does not come back after a kick",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using server = new TestServer();
    const client = runScript("client.ts", [
      "--port",
      String(server.port),
      "--listen-only",
      "--reconnect",
    ]);
    const line = await server.waitLog((line) => line.startsWith("connected "));
    server.server.console(`/kick ${/id=(\d+)/.exec(line)![1]}`);
    assert.equal((await client.child.status).code, 0);
    assert.equal((await client.stdout.rest()).at(-1), "* kicked by server");
    const statuses = await client.stderr.rest();
    assert.match(statuses[0], /^connected to /);
    assert.deepEqual(statuses.slice(1), ["connection closed by server"]);
  },
});

// ---- who may join (access.ts, auth.ts)

Deno.test("runSession() gives the room's password first, then takes its name", async () => {
  const password = "open sesame 芝麻";
  await using server = new TestServer({ password: new Password(password) });
  using alice = await server.connect();
  assert.equal(await alice.line(), "* password needed: send /pass PASSWORD");
  await alice.send(`/pass ${password}\n`);
  assert.equal(await alice.line(), "* welcome, you are user1 (type /help for commands)");
  const input = new Input();
  const output = new Output();
  input.type("hello\n");
  input.end();
  const ending = await runSession(
    await connect(server.port),
    { input, ...output },
    new Outgoing(input),
    { chosen: "bob", password },
  );
  assert.equal(ending.kind, "done");
  assert.deepEqual(output.printed, [
    "* password needed: send /pass PASSWORD",
    "* welcome, you are user2 (type /help for commands)",
    "* user2 is now bob",
  ]);
  assert.equal(await alice.line(), "* user2 joined");
  assert.equal(await alice.line(), "* user2 is now bob");
  assert.equal(await alice.line(), "<bob> hello");
  assert.ok(!server.logs.some((line) => line.includes(password)));
});

Deno.test("client exits 1 when the server turns it away for its address", async () => {
  await using server = new TestServer({
    access: { deny: [parseAddressRange("--deny", "127.0.0.1")] },
  });
  const input = new Input();
  const output = new Output();
  const code = await runClient(await connect(server.port), { input, ...output });
  assert.equal(code, 1);
  assert.deepEqual(output.printed, ["ERR not allowed from 127.0.0.1"]);
  assert.deepEqual(output.statuses, ["connection closed by server"]);
  input.end();
});

Deno.test("client gives up on a server that never answers its FIN: one line, exit 3", async () => {
  const output = new Output();
  const input = new Input();
  const clientDone = Promise.withResolvers<void>();
  await withRawServer(async (conn, lines) => {
    await conn.write(bytes("* hello\n"));
    assert.equal(await lines.line(), "bye");
    assert.equal(await lines.line(), null); // the client's FIN: never answered with ours
    await clientDone.promise;
  }, async (port) => {
    const running = runClient(await connect(port), { input, ...output, finWaitMs: 100 });
    input.type("bye\n");
    input.end();
    assert.equal(await within(5000, "the client's end", running), EXIT_CONNECTION_LOST);
    clientDone.resolve();
  });
  assert.deepEqual(output.statuses, [
    "connection lost: no FIN and no data from the server for 0.1 s after ours",
  ]);
});

Deno.test("client says a TLS server's alert means --tls, and exits 1", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn) => {
    await conn.write(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])); // a TLS alert
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 1);
  });
  input.end();
  assert.deepEqual(output.printed, []);
  assert.deepEqual(output.statuses, ["the server speaks TLS: connect with --tls"]);
});

Deno.test("client waits for the server's FIN while the server is still sending, however long", async () => {
  const output = new Output();
  const input = new Input();
  await withRawServer(async (conn, lines) => {
    assert.equal(await lines.line(), "go");
    assert.equal(await lines.line(), null); // the client's FIN
    // Ten lines 60 ms apart: 600 ms in all, six times the client's FIN wait.
    for (let i = 1; i <= 10; i++) {
      await conn.write(bytes(`line ${i}\n`));
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
  }, async (port) => {
    const running = runClient(await connect(port), { input, ...output, finWaitMs: 100 });
    input.type("go\n");
    input.end();
    assert.equal(await within(5000, "the client's end", running), 0);
  });
  assert.deepEqual(output.printed, Array.from({ length: 10 }, (_, i) => `line ${i + 1}`));
  assert.deepEqual(output.statuses, []);
});

Deno.test({
  name: "client.ts --reconnect stops when refused for good (an address the server denies)",
  ignore: NEEDS_SPAWN,
  async fn() {
    const server = await startScriptServer("server.ts", ["--deny", "127.0.0.1"]);
    try {
      const client = runScript("client.ts", ["--port", String(server.port), "--reconnect"]);
      const status = await within(10_000, "the client's end", client.child.status);
      assert.equal(status.code, 1);
      assert.deepEqual(await client.stdout.rest(), ["ERR not allowed from 127.0.0.1"]);
      const statuses = await client.stderr.rest();
      assert.ok(!statuses.some((line) => line.includes("reconnecting")), statuses.join("\n"));
    } finally {
      server.child.kill("SIGTERM");
      await finish(server);
    }
  },
});

Deno.test({
  name: "client.ts --tls --ca FILE says in one line that FILE holds no certificate",
  ignore: NEEDS_SPAWN,
  async fn() {
    const client = runScript(
      "client.ts",
      ["--port", "1", "--tls", "--ca", "deno.json"],
      { permissions: ["--allow-net", "--allow-read=deno.json"] },
    );
    const status = await client.child.status;
    assert.equal(status.code, 1);
    assert.deepEqual(await client.stderr.rest(), [
      "client.ts: --ca deno.json holds no PEM certificate",
    ]);
  },
});
