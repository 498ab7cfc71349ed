/**
 * In-process tests of client.ts: runClient() over real sockets on 127.0.0.1,
 * with stdin and stdout replaced by test doubles.
 */
import assert from "node:assert/strict";
import { runClient } from "../client.ts";
import { startServer } from "../server.ts";
import { bytes, LineReader } from "./util.ts";

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
  assert.deepEqual(output.printed, ["[2J]0;pwnedclear1m", "ok", "ÿ", "a\ufffdb"]);
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
  await withRawServer(async (conn) => {
    await conn.write(bytes(`${"<a> ".padEnd(386, "x")}\n${"y".repeat(600)}\nafter\n`));
  }, async (port) => {
    assert.equal(await runClient(await connect(port), { input, ...output }), 0);
  });
  input.end();
  // 386 bytes is the longest relay a netchat server can send: it must get through.
  assert.equal(output.printed.length, 2);
  assert.equal(bytes(output.printed[0]).length, 386);
  assert.equal(output.printed[1], "after");
  assert.deepEqual(output.statuses, [
    "client.ts: dropped a line over 512 bytes from the server",
    "connection closed by server",
  ]);
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
