/**
 * End-to-end tests: server.ts and client.ts run as real processes, as a user
 * runs them. They need --allow-run (see the README's test command).
 */
import assert from "node:assert/strict";
import { CONSOLE_CLOSED } from "../cli.ts";
import {
  bytes,
  finish,
  LineReader,
  NEEDS_SPAWN,
  ROOT,
  runScript,
  startScriptServer,
} from "./util.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: NEEDS_SPAWN, fn });

async function connect(port: number): Promise<{ conn: Deno.TcpConn; lines: LineReader }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return { conn, lines: new LineReader(conn) };
}

/** A port nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`server.ts shuts down on ${signal}: notice and FIN to every client, exit 0 within 3 s`, async () => {
    const server = await startScriptServer("server.ts");
    const clients = [await connect(server.port), await connect(server.port)];
    for (const { lines } of clients) await lines.until((line) => line.startsWith("* welcome"));
    const started = Date.now();
    server.child.kill(signal);
    for (const { conn, lines } of clients) {
      assert.equal(
        await lines.until((line) => !line.endsWith(" joined")),
        "* server shutting down",
      );
      // The notice goes ahead of any backlog: a join notice still queued may follow it.
      const rest = await lines.rest(); // up to the server's FIN
      assert.deepEqual(rest.filter((line) => !line.endsWith(" joined")), []);
      conn.close();
    }
    const status = await finish(server);
    assert.equal(status.code, 0);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  });
}

test("server.ts exits 0 within 3 s on SIGTERM even when a client never sends its FIN", async () => {
  const server = await startScriptServer("server.ts");
  const { conn, lines } = await connect(server.port);
  await lines.line();
  const started = Date.now();
  server.child.kill("SIGTERM");
  assert.equal((await finish(server)).code, 0);
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  conn.close();
});

test("server.ts exits within 3 s on SIGTERM even when nobody reads its console output", async () => {
  // startScriptServer reads stdout only up to the listening line: from here on
  // the pipe fills (64 KiB) and the server's log writes wait.
  const server = await startScriptServer("server.ts");
  const alice = await connect(server.port);
  const bob = await connect(server.port);
  await bob.lines.until((line) => line.startsWith("* welcome"));
  const line = "x".repeat(200);
  const lines = 2000; // 400 KB of relays, each logged: far more than the pipe holds
  await alice.conn.write(bytes(`${line}\n`.repeat(lines)));
  for (let i = 0; i < lines; i++) await bob.lines.until((text) => text.startsWith("<user1> "));
  const started = Date.now();
  server.child.kill("SIGTERM");
  // A server that waits on its console for ever is killed after 5 s, failing the test.
  const guard = setTimeout(() => server.child.kill("SIGKILL"), 5000);
  const status = await server.child.status;
  clearTimeout(guard);
  const took = Date.now() - started;
  assert.equal(status.code, 0, `exit ${status.code} ${status.signal ?? ""} after ${took} ms`);
  assert.ok(took < 3000, `took ${took} ms`);
  alice.conn.close();
  bob.conn.close();
  await finish(server);
});

test("server.ts reads console lines and commands from stdin, and /quit shuts it down", async () => {
  const server = await startScriptServer("server.ts");
  const alice = await connect(server.port);
  await alice.lines.line();
  await server.stdin.write(bytes("hello everyone\n/list\n/kick 1\n"));
  assert.equal(await alice.lines.line(), "<server> hello everyone");
  assert.equal(await alice.lines.line(), "* kicked by server");
  assert.equal(await alice.lines.line(), null);
  await server.stdout.until((line) => /^\* id=1 name=user1 addr=127\.0\.0\.1:\d+ /.test(line));
  await server.stdout.until((line) => /^closed 127\.0\.0\.1:\d+ id=1 user1 \(kicked\)$/.test(line));
  alice.conn.close();
  // /quit, then the end of input: the server is on its way out, not "still serving".
  await server.stdin.write(bytes("/quit\n"));
  await server.stdin.close();
  const [status, log] = await Promise.all([server.child.status, server.stdout.rest()]);
  assert.equal(status.code, 0);
  assert.equal(log.at(-1)?.replace(/\d+ ms$/, "N ms"), "shut down in N ms");
  assert.ok(!log.includes(CONSOLE_CLOSED), log.join("\n"));
  await finish(server);
});

test("server.ts keeps serving after its stdin is closed, and says so once in its log", async () => {
  const server = await startScriptServer("server.ts", ["--mode", "echo"]);
  await server.stdin.close();
  assert.equal(await server.stdout.line(), CONSOLE_CLOSED);
  const { conn, lines } = await connect(server.port);
  await conn.write(bytes("still here\n"));
  assert.equal(await lines.line(), "still here");
  conn.close();
  server.child.kill("SIGTERM");
  const rest = await server.stdout.rest();
  assert.equal(rest.at(-1)?.replace(/\d+ ms$/, "N ms"), "shut down in N ms");
  assert.ok(!rest.includes(CONSOLE_CLOSED), "said twice");
  assert.equal((await finish(server)).code, 0);
});

test("server.ts logs each connection with the client's address and each close with its cause", async () => {
  const server = await startScriptServer("server.ts", ["--trace"]);
  const { conn, lines } = await connect(server.port);
  const port = (conn.localAddr as Deno.NetAddr).port;
  await lines.line();
  await conn.write(bytes("/quit\n"));
  assert.equal(await lines.line(), "* bye");
  assert.equal(await lines.line(), null);
  await conn.closeWrite();
  const logged: string[] = [];
  await server.stdout.until((line) => {
    if (line.includes(`:${port}`)) logged.push(line);
    return line === `trace 127.0.0.1:${port} closed (socket released)`;
  });
  assert.deepEqual(logged.map((line) => line.replace(/ \(.*$/, "")), [
    `trace 127.0.0.1:${port} accepted`,
    `connected 127.0.0.1:${port} id=1 user1`,
    `closed 127.0.0.1:${port} id=1 user1`,
    `trace 127.0.0.1:${port} FIN sent`,
    `trace 127.0.0.1:${port} FIN received`,
    `trace 127.0.0.1:${port} closed`,
  ]);
  conn.close();
  server.child.kill("SIGTERM");
  await finish(server);
});

/** Runs a script to completion and returns its exit code, stdout and stderr lines. */
async function run(
  script: string,
  args: string[],
  options: { permissions?: string[]; stdin?: string } = {},
): Promise<{ code: number; stdout: string[]; stderr: string[] }> {
  const child = runScript(script, args, options);
  if (options.stdin !== undefined) await child.stdin.write(bytes(options.stdin));
  await child.stdin.close();
  const [stdout, stderr, status] = await Promise.all([
    child.stdout.rest(),
    child.stderr.rest(),
    child.child.status,
  ]);
  return { code: status.code, stdout, stderr };
}

test("server.ts reports a port in use in one line and exits 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const result = await run("server.ts", ["--port", String(listener.addr.port)]);
  listener.close();
  assert.equal(result.code, 1);
  assert.deepEqual(result.stderr, [
    `server.ts: cannot listen on 127.0.0.1:${listener.addr.port}: address already in use`,
  ]);
});

test("server.ts brackets an IPv6 address in its one-line error", async () => {
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  const result = await run("server.ts", ["--host", "::1", "--port", String(listener.addr.port)]);
  listener.close();
  assert.equal(result.code, 1);
  assert.deepEqual(result.stderr, [
    `server.ts: cannot listen on [::1]:${listener.addr.port}: address already in use`,
  ]);
});

for (const script of ["server.ts", "client.ts"]) {
  test(`${script} without --allow-net says which flag to add and exits 1`, async () => {
    const port = closedPort();
    const result = await run(script, ["--port", String(port)], { permissions: ["--no-prompt"] });
    assert.equal(result.code, 1);
    assert.deepEqual(result.stderr, [
      `${script}: no network permission for 127.0.0.1:${port}: run it as deno run --allow-net ` +
      `${script} (or --allow-net=127.0.0.1:${port}, for that alone)`,
    ]);
  });

  test(`${script} with a grant for another address names the one it needs`, async () => {
    const port = closedPort();
    const result = await run(script, ["--port", String(port)], {
      permissions: ["--no-prompt", `--allow-net=127.0.0.1:${port === 65535 ? 1 : port + 1}`],
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr.join("\n"),
      new RegExp(`for 127\\.0\\.0\\.1:${port}: .*--allow-net=127\\.0\\.0\\.1:${port}`),
    );
  });

  test(`${script} rejects a bad flag in one line pointing at --help, exit 2`, async () => {
    for (const args of [["--bogus"], ["--port", "70000"], ["--port"], ["stray"]]) {
      const result = await run(script, args);
      assert.equal(result.code, 2, args.join(" "));
      assert.equal(result.stderr.length, 1, result.stderr.join("\n"));
      assert.match(result.stderr[0], new RegExp(`^${script}: .+ \\(see --help\\)$`));
    }
  });

  test(`${script} --help documents every flag and exits 0`, async () => {
    const result = await run(script, ["--help"]);
    assert.equal(result.code, 0);
    const source = await Deno.readTextFile(new URL(`../${script}`, import.meta.url));
    const flags = [...source.matchAll(/^\s+"?([a-z-]+)"?: \{ type: "/gm)].map((match) => match[1]);
    assert.ok(flags.length >= 3);
    for (const flag of flags) {
      assert.ok(result.stdout.some((line) => line.includes(`--${flag}`)), `--${flag} missing`);
    }
  });
}

test("server.ts rejects a bad --mode", async () => {
  const result = await run("server.ts", ["--mode", "loud"]);
  assert.equal(result.code, 2);
  assert.deepEqual(result.stderr, [
    'server.ts: Cannot parse --mode "loud": must be chat or echo (see --help)',
  ]);
});

test("server.ts refuses a --max-queue too small for the answer to one read", async () => {
  const result = await run("server.ts", ["--max-queue", "2048"]);
  assert.equal(result.code, 2);
  assert.deepEqual(result.stderr, [
    'server.ts: Cannot parse --max-queue "2048": must be a whole number from 65536 to 1073741824 (see --help)',
  ]);
});

for (const script of ["server.ts", "client.ts", "udp_server.ts", "udp_client.ts"]) {
  test(`${script} rejects an empty --host in one line`, async () => {
    const result = await run(script, ["--host", ""]);
    assert.equal(result.code, 2);
    assert.deepEqual(result.stderr, [
      `${script}: Cannot parse --host "": give a name or an address (see --help)`,
    ]);
  });
}

test("client.ts piped into an echo server prints the echo and exits 0, like nc -N", async () => {
  const server = await startScriptServer("server.ts", ["--mode", "echo"]);
  const result = await run("client.ts", ["--port", String(server.port)], {
    stdin: "hi\n你好，世界\n",
  });
  assert.equal(result.code, 0);
  assert.deepEqual(result.stdout, ["hi", "你好，世界"]);
  assert.match(result.stderr[0], /^connected to 127\.0\.0\.1:\d+ from 127\.0\.0\.1:\d+$/);
  server.child.kill("SIGTERM");
  await finish(server);
});

test("client.ts reports a refused connection in one line and exits 1", async () => {
  const port = closedPort();
  const result = await run("client.ts", ["--port", String(port)]);
  assert.equal(result.code, 1);
  assert.deepEqual(result.stderr, [
    `client.ts: cannot connect to 127.0.0.1:${port}: connection refused`,
  ]);
});

test("client.ts says when the server closes first and exits 0", async () => {
  const server = await startScriptServer("server.ts");
  const client = runScript("client.ts", ["--port", String(server.port), "--name", "alice"]);
  await client.stdout.until((line) => line === "* user1 is now alice");
  await server.stdin.write(bytes("/kick 1\n"));
  assert.equal(await client.stdout.line(), "* kicked by server");
  await client.stderr.until((line) => line === "connection closed by server");
  assert.equal((await finish(client)).code, 0);
  server.child.kill("SIGTERM");
  await finish(server);
});

test("client.ts rejects an invalid --name before connecting", async () => {
  const result = await run("client.ts", ["--name", "no spaces", "--port", String(closedPort())]);
  assert.equal(result.code, 2);
  assert.match(result.stderr[0], /^client\.ts: Cannot use --name "no spaces": invalid name/);
});

for (const script of ["client.ts", "udp_client.ts"]) {
  test(`${script} says in one line that its input cannot be read, and exits 1`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const command =
      `"${Deno.execPath()}" run --quiet --allow-net ${script} --port ${listener.addr.port} < /`;
    const output = await new Deno.Command("sh", {
      args: ["-c", command],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 1);
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n");
    assert.deepEqual(stderr.filter((line) => !line.startsWith("connected to ")), [
      `${script}: cannot read standard input: Is a directory (os error 21)`,
    ]);
  });
}

test("client.ts turned away by a full server shows why and exits 1", async () => {
  const server = await startScriptServer("server.ts", ["--max-clients", "1"]);
  const { conn, lines } = await connect(server.port);
  try {
    await lines.until((line) => line.startsWith("* welcome"));
    const result = await run("client.ts", ["--port", String(server.port)]);
    assert.deepEqual(result.stdout, ["ERR server full (max 1 client)"]);
    assert.equal(result.code, 1);
  } finally {
    conn.close();
    server.child.kill("SIGTERM");
    await finish(server);
  }
});

for (const script of ["server.ts", "client.ts", "udp_server.ts", "udp_client.ts"]) {
  test(`${script} runs by itself through its shebang`, async () => {
    const output = await new Deno.Command(`${ROOT}${script}`, {
      args: ["--help"],
      cwd: "/",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.match(
      new TextDecoder().decode(output.stdout),
      new RegExp(`^Usage: deno run --allow-net ${script}`),
    );
  });
}

test("client.ts --listen-only stays and prints the room; --timestamps puts the time first", async () => {
  const server = await startScriptServer("server.ts");
  const port = String(server.port);
  const listener = runScript("client.ts", ["--port", port, "--listen-only", "--timestamps"]);
  await listener.stdin.close(); // without --listen-only this would send our FIN now
  assert.match((await listener.stdout.line())!, /^\d\d:\d\d:\d\d \* welcome, you are user1 /);
  const { conn, lines } = await connect(server.port);
  await lines.until((line) => line.startsWith("* welcome"));
  await conn.write(bytes("still there?\n"));
  assert.match((await listener.stdout.line())!, /^\d\d:\d\d:\d\d \* user2 joined$/);
  assert.match((await listener.stdout.line())!, /^\d\d:\d\d:\d\d <user2> still there\?$/);
  conn.close();
  server.child.kill("SIGTERM");
  assert.equal((await finish(listener)).code, 0);
  await finish(server);
});

test("client.ts --trace shows its side of the handshake and of each FIN, in order", async () => {
  const server = await startScriptServer("server.ts", ["--mode", "echo"]);
  const result = await run("client.ts", ["--port", String(server.port), "--trace"], {
    stdin: "hello\n",
  });
  server.child.kill("SIGTERM");
  await finish(server);
  assert.equal(result.code, 0);
  assert.deepEqual(result.stdout, ["hello"]);
  const steps = result.stderr.filter((line) => line.startsWith("trace "))
    .map((line) => line.replace(/^trace 127\.0\.0\.1:\d+ /, ""));
  assert.deepEqual(steps, [
    "connected (handshake done: SYN, SYN-ACK, ACK)",
    "FIN sent (closeWrite: no more data from the client)",
    "FIN received (read returned EOF: the server sends no more)",
    "closed (socket released)",
  ]);
});
