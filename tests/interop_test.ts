/**
 * Interop: OpenBSD nc, ncat, socat and Python sockets as the peer on either
 * side of server.ts and client.ts. The tools are installed by .ci/run; a
 * missing tool fails the test rather than skipping it.
 */
import assert from "node:assert/strict";
import { bytes, finish, NEEDS_SPAWN, runProgram, runScript, startScriptServer } from "./util.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: NEEDS_SPAWN, fn });

test("two client.ts and one OpenBSD nc chat: names, /nick, /list, Chinese, no raw escapes, FIN both ways", async () => {
  const server = await startScriptServer("server.ts", ["--trace"]);
  const port = String(server.port);
  const alice = runScript("client.ts", ["--port", port, "--name", "alice"]);
  await alice.stdout.until((line) => line === "* user1 is now alice");
  const bob = runScript("client.ts", ["--port", port, "--name", "bob"]);
  await alice.stdout.until((line) => line === "* user2 is now bob");
  const nc = runProgram("nc.openbsd", ["-N", "127.0.0.1", port]);
  await alice.stdout.until((line) => line === "* user3 joined");

  await nc.stdin.write(
    bytes("/nick carol\n你好，我是 carol\n\x1b[31mred\x1b[0m \x1b]0;title\x07\n/list\n"),
  );
  assert.equal(
    await alice.stdout.until((line) => line.startsWith("<")),
    "<carol> 你好，我是 carol",
  );
  assert.equal(await alice.stdout.line(), "<carol> red ");
  assert.equal(await bob.stdout.until((line) => line.startsWith("<")), "<carol> 你好，我是 carol");
  assert.equal(await bob.stdout.line(), "<carol> red ");

  const list = [await nc.stdout.until((line) => line.startsWith("* id=1 "))];
  for (let i = 0; i < 3; i++) list.push((await nc.stdout.line())!);
  assert.deepEqual(list.map((line) => line.split(" ")[2]), [
    "name=alice",
    "name=bob",
    "name=carol",
    "clients",
  ]);
  const carolAddress = list[2].split(" ")[3].slice("addr=".length);

  await bob.stdin.write(bytes("很高兴认识你\n"));
  assert.equal(await nc.stdout.until((line) => line.startsWith("<")), "<bob> 很高兴认识你");

  // nc quits: /quit, then end of input makes nc -N send its FIN.
  await nc.stdin.write(bytes("/quit\n"));
  assert.equal(await nc.stdout.until((line) => line === "* bye"), "* bye");
  const ncStatus = await finish(nc);
  assert.equal(ncStatus.code, 0);
  assert.equal(
    await alice.stdout.until((line) => line.startsWith("* carol")),
    "* carol left (quit)",
  );
  // The server sent its FIN and then received nc's: a clean four-way close, no RST.
  await server.stdout.until((line) =>
    line === `trace ${carolAddress} FIN sent (closeWrite: no more data from the server)`
  );
  await server.stdout.until((line) => line.startsWith(`trace ${carolAddress} FIN received`));
  await server.stdout.until((line) => line === `trace ${carolAddress} closed (socket released)`);

  for (const client of [alice, bob]) assert.equal((await finish(client)).code, 0);
  server.child.kill("SIGTERM");
  await finish(server);
});

test("ncat and socat work as clients of the echo server, byte for byte", async () => {
  const server = await startScriptServer("server.ts", ["--mode", "echo"]);
  const text = "plain\n中文テキスト 🙂\n";
  for (
    const [program, args] of [
      ["ncat", ["127.0.0.1", String(server.port)]],
      ["socat", ["-t", "5", "-", `TCP:127.0.0.1:${server.port}`]],
    ] as const
  ) {
    const peer = runProgram(program, [...args]);
    await peer.stdin.write(bytes(text));
    assert.equal(await peer.stdout.line(), "plain", program);
    assert.equal(await peer.stdout.line(), "中文テキスト 🙂", program);
    peer.child.kill("SIGTERM");
    await finish(peer).catch(() => {});
  }
  server.child.kill("SIGTERM");
  await finish(server);
});

/** A Python client that sends lines, half-closes, and prints what it gets until EOF. */
const HALF_CLOSING_PEER = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall("第一行\\nsecond\\n".encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
print("EOF")
`;

test("a Python client that half-closes gets every echo and then a clean EOF", async () => {
  const server = await startScriptServer("server.ts", ["--mode", "echo"]);
  const peer = runProgram("python3", ["-c", HALF_CLOSING_PEER, String(server.port)]);
  assert.deepEqual(await peer.stdout.rest(), ["第一行", "second", "EOF"]);
  assert.equal((await peer.child.status).code, 0);
  server.child.kill("SIGTERM");
  await finish(server);
});

/** A Python echo server on port 0 that prints its port and serves one client. */
const PYTHON_ECHO_SERVER = `
import socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(5)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
while True:
    chunk = conn.recv(4096)
    if not chunk:
        break
    conn.sendall(chunk)
conn.close()
`;

test("client.ts against a Python echo server: prints the echoes and exits 0 after both FINs", async () => {
  const server = runProgram("python3", ["-c", PYTHON_ECHO_SERVER]);
  const port = (await server.stdout.line())!;
  const client = runScript("client.ts", ["--port", port]);
  await client.stdin.write(bytes("hi\n你好\n"));
  await client.stdin.close();
  assert.deepEqual(await client.stdout.rest(), ["hi", "你好"]);
  assert.equal((await client.child.status).code, 0);
  assert.equal((await server.child.status).code, 0);
});

test("client.ts against an OpenBSD nc listener: chat in both directions, then nc closes first", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(listener.addr.port);
  listener.close();
  const nc = runProgram("nc.openbsd", ["-N", "-l", "127.0.0.1", port]);
  // nc prints nothing when it is ready, so retry the connection until it listens.
  let client = runScript("client.ts", ["--port", port]);
  while ((await client.stderr.line())?.startsWith("connected") !== true) {
    await finish(client);
    client = runScript("client.ts", ["--port", port]);
  }
  await client.stdin.write(bytes("hello nc\n"));
  assert.equal(await nc.stdout.line(), "hello nc");
  await nc.stdin.write(bytes("hello client\n"));
  assert.equal(await client.stdout.line(), "hello client");
  await nc.stdin.close(); // with -N, nc sends its FIN at end of input: the server side closes first
  assert.equal(await client.stderr.line(), "connection closed by server");
  assert.equal((await finish(client)).code, 0);
  await finish(nc);
});
