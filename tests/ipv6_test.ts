/**
 * IPv6 (issue 13), with the real scripts as processes: each pair over ::1,
 * and each server on :: (dual stack) with an IPv4 client and an IPv6 client
 * at once. An IPv4 peer of a server on :: reaches it as ::ffff:127.0.0.1;
 * every address the scripts print writes it as the IPv4 address it is, and
 * every IPv6 address in brackets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { say } from "../protocol.ts";
import { bytes, finish, NEEDS_SPAWN, runScript, type Script, within } from "./util.ts";

/** Every wait here is for something a broken script would never print: it fails after this. */
const WAIT_MS = 10_000;

/**
 * Starts a server script on `host`, port 0, and returns it with its port, read
 * from its `listening on` line, which must name `shown` (the host as printed).
 */
async function startServerOn(
  script: "server.ts" | "udp_server.ts",
  host: string,
  shown: string,
  mode: "chat" | "echo" = "chat",
): Promise<Script & { port: number }> {
  const server = runScript(script, ["--host", host, "--port", "0", "--mode", mode], {
    serverLog: true,
  });
  const line = await within(WAIT_MS, `${script}'s listening line`, server.stdout.line());
  const transport = script === "server.ts" ? "tcp" : "udp";
  const pattern = new RegExp(
    `^listening on ${RegExp.escape(shown)}:(\\d+) \\(${transport}, ${mode}\\)$`,
  );
  const port = pattern.exec(line ?? "")?.[1];
  assert.ok(port !== undefined, `${script}'s first log line: ${line}`);
  return { ...server, port: Number(port) };
}

/** The next line of `reader` that `match` accepts; fails after WAIT_MS or at the end. */
function next(
  reader: Script["stdout"],
  what: string,
  match: (line: string) => boolean,
): Promise<string> {
  return within(WAIT_MS, what, reader.until(match));
}

/** The next line of `reader`; fails after WAIT_MS, or if the stream ended. */
async function nextLine(reader: Script["stdout"], what: string): Promise<string> {
  const line = await within(WAIT_MS, what, reader.line());
  assert.ok(line !== null, `${what}: the output ended`);
  return line;
}

/** Ends the input of `clients` and the server (SIGTERM), and checks every client exited 0. */
async function stopAll(server: Script, clients: Script[]): Promise<void> {
  const codes = await Promise.all(clients.map(async (client) => (await finish(client)).code));
  server.child.kill("SIGTERM");
  const status = await finish(server);
  assert.deepEqual(codes, clients.map(() => 0), "the clients' exit codes");
  assert.equal(status.code, 0, "the server's exit code");
}

/** Kills what a failed test left running; a process that already exited is left alone. */
async function cleanUp(scripts: Script[]): Promise<void> {
  for (const script of scripts) {
    try {
      script.child.kill("SIGKILL");
    } catch {
      // It had exited.
    }
    await finish(script);
  }
}

/** The `/list` line of member `id` named `name` at `at`. */
function listed(id: number, name: string, at: string): RegExp {
  return new RegExp(`^\\* id=${id} name=${name} addr=${RegExp.escape(at)} age=\\d+ idle=\\d+$`);
}

/**
 * A client.ts connecting to `host`; resolves once it is welcomed as `name`,
 * with its own port, from its `connected to SERVER from SELF` line, where
 * both addresses must be written as `shown` (it connects from the loopback
 * it connects to).
 */
async function startClient(
  host: string,
  shown: string,
  port: number,
  name: string,
): Promise<Script & { localPort: number }> {
  const client = runScript("client.ts", ["--host", host, "--port", String(port)]);
  const connected = await nextLine(client.stderr, `${name}'s connected line`);
  const at = RegExp.escape(shown);
  const localPort = new RegExp(`^connected to ${at}:${port} from ${at}:(\\d+)$`)
    .exec(connected)?.[1];
  assert.ok(localPort !== undefined, `${name}: ${connected}`);
  assert.equal(await nextLine(client.stdout, `${name}'s welcome`), say.welcome(name));
  return { ...client, localPort: Number(localPort) };
}

/**
 * Two chat clients of server.ts on `listenHost`, connecting to `first.host`
 * and `second.host`: the server's log and the second's /list show each one
 * as `shown:PORT`, with the port the client printed.
 */
async function tcpChat(
  listenHost: string,
  listenShown: string,
  first: { host: string; shown: string },
  second: { host: string; shown: string },
): Promise<void> {
  const server = await startServerOn("server.ts", listenHost, listenShown);
  const scripts: Script[] = [server];
  try {
    const one = await startClient(first.host, first.shown, server.port, "user1");
    scripts.push(one);
    const oneAt = `${first.shown}:${one.localPort}`;
    assert.equal(
      await next(server.stdout, "user1 in the log", (line) => line.startsWith("connected ")),
      `connected ${oneAt} id=1 user1`,
    );
    const two = await startClient(second.host, second.shown, server.port, "user2");
    scripts.push(two);
    const twoAt = `${second.shown}:${two.localPort}`;
    assert.equal(
      await next(server.stdout, "user2 in the log", (line) => line.startsWith("connected ")),
      `connected ${twoAt} id=2 user2`,
    );
    assert.equal(await nextLine(one.stdout, "user2's arrival"), say.joined("user2"));

    await two.stdin.write(bytes("你好，user1\n/list\n"));
    assert.equal(await nextLine(one.stdout, "user2's line"), say.relay("user2", "你好，user1"));
    assert.match(await nextLine(two.stdout, "the first /list line"), listed(1, "user1", oneAt));
    assert.match(await nextLine(two.stdout, "the second /list line"), listed(2, "user2", twoAt));
    assert.equal(await nextLine(two.stdout, "the /list count"), "* 2 clients");

    await one.stdin.write(bytes("/quit\n"));
    assert.equal(
      await next(server.stdout, "user1 leaving", (line) => line.startsWith("closed ")),
      `closed ${oneAt} id=1 user1 (quit)`,
    );
    await stopAll(server, [one, two]);
  } finally {
    await cleanUp(scripts);
  }
}

Deno.test({
  name: "server.ts and client.ts chat over ::1, written bare or in brackets",
  ignore: NEEDS_SPAWN,
  fn: () =>
    tcpChat("[::1]", "[::1]", { host: "::1", shown: "[::1]" }, { host: "[::1]", shown: "[::1]" }),
});

Deno.test({
  name: "server.ts on :: shows an IPv4 client as 127.0.0.1:PORT beside an IPv6 one as [::1]:PORT",
  ignore: NEEDS_SPAWN,
  fn: () =>
    tcpChat(
      "::",
      "[::]",
      { host: "127.0.0.1", shown: "127.0.0.1" },
      { host: "::1", shown: "[::1]" },
    ),
});

/** A udp_client.ts that joins the room as `name` (stdin kept open); resolves once welcomed. */
async function joinUdp(host: string, port: number, name: string): Promise<Script> {
  const client = runScript("udp_client.ts", [
    "--host",
    host,
    "--port",
    String(port),
    "--name",
    name,
    "--join",
    "--wait",
    "100",
  ]);
  assert.equal(await nextLine(client.stdout, `${name}'s welcome`), say.welcome(name));
  return client;
}

/**
 * Two udp_client.ts members of udp_server.ts on `listenHost`, sending to
 * `first.host` and `second.host`: each one's join, place in the second's
 * /list and leaving show it as `shown:PORT`, one peer under one address.
 */
async function udpChat(
  listenHost: string,
  listenShown: string,
  first: { host: string; shown: string },
  second: { host: string; shown: string },
): Promise<void> {
  const server = await startServerOn("udp_server.ts", listenHost, listenShown);
  const scripts: Script[] = [server];
  /** The address the log shows for `name`'s join; it must be written as `shown`. */
  const joined = async (name: string, id: number, shown: string) => {
    const line = await next(server.stdout, `${name}'s join`, (l) => l.startsWith("joined "));
    const at = new RegExp(`^joined (${RegExp.escape(shown)}:\\d+) id=${id} ${name}$`)
      .exec(line)?.[1];
    assert.ok(at !== undefined, line);
    return at;
  };
  try {
    const alice = await joinUdp(first.host, server.port, "alice");
    scripts.push(alice);
    const aliceAt = await joined("alice", 1, first.shown);
    const bob = await joinUdp(second.host, server.port, "bob");
    scripts.push(bob);
    const bobAt = await joined("bob", 2, second.shown);
    assert.equal(await nextLine(alice.stdout, "bob's arrival"), say.joined("bob"));

    // Alice speaks again: still one peer, under the address she joined with.
    await alice.stdin.write(bytes("你好，bob\n"));
    assert.equal(await nextLine(bob.stdout, "alice's line"), say.relay("alice", "你好，bob"));
    await bob.stdin.write(bytes("/list\n"));
    assert.match(await nextLine(bob.stdout, "the first /list line"), listed(1, "alice", aliceAt));
    assert.match(await nextLine(bob.stdout, "the second /list line"), listed(2, "bob", bobAt));
    assert.equal(await nextLine(bob.stdout, "the /list count"), "* 2 peers");

    // The end of alice's input sends /quit: the table finds her by the same address.
    await alice.stdin.close();
    const left = await next(server.stdout, "alice leaving", (l) => l.startsWith("left "));
    assert.equal(left, `left ${aliceAt} id=1 alice (quit)`);
    assert.equal(await nextLine(bob.stdout, "alice's leaving"), say.left("alice", "quit"));
    await stopAll(server, [alice, bob]);
  } finally {
    await cleanUp(scripts);
  }
}

Deno.test({
  name: "udp_server.ts and udp_client.ts chat over ::1, written bare or in brackets",
  ignore: NEEDS_SPAWN,
  fn: () =>
    udpChat("::1", "[::1]", { host: "::1", shown: "[::1]" }, { host: "[::1]", shown: "[::1]" }),
});

Deno.test({
  name: "udp_server.ts on :: shows an IPv4 peer as 127.0.0.1:PORT beside an IPv6 one as [::1]:PORT",
  ignore: NEEDS_SPAWN,
  fn: () =>
    udpChat(
      "::",
      "[::]",
      { host: "127.0.0.1", shown: "127.0.0.1" },
      { host: "[::1]", shown: "[::1]" },
    ),
});

Deno.test({
  name:
    "udp_client.ts --expect-reply gets its answers from an echo server on :: over both families",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = await startServerOn("udp_server.ts", "::", "[::]", "echo");
    try {
      for (
        const [host, shown] of [["127.0.0.1", "127.0.0.1"], ["[::1]", "[::1]"], ["::1", "[::1]"]]
      ) {
        const client = runScript("udp_client.ts", [
          "--host",
          host,
          "--port",
          String(server.port),
          "--expect-reply",
        ]);
        await client.stdin.write(bytes("你好\n"));
        await client.stdin.close();
        const [stdout, stderr, status] = await within(
          WAIT_MS,
          `udp_client.ts --host ${host}`,
          Promise.all([client.stdout.rest(), client.stderr.rest(), client.child.status]),
        );
        assert.deepEqual(
          { code: status.code, stdout, stderr },
          { code: 0, stdout: ["你好"], stderr: ["sent 1, answered 1, lost 0"] },
          host,
        );
        const logged = await next(server.stdout, "the datagram", (l) => l.startsWith("datagram "));
        assert.match(logged, new RegExp(`^datagram from ${RegExp.escape(shown)}:\\d+: 7 bytes$`));
      }
      server.child.kill("SIGTERM");
      assert.equal((await finish(server)).code, 0);
    } finally {
      await cleanUp([server]);
    }
  },
});

Deno.test({
  name: "the clients write a host given in brackets in one pair of brackets in their errors",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    // Ports nothing listens on: bound on ::1, then released.
    const tcp = Deno.listen({ hostname: "::1", port: 0 });
    const tcpPort = tcp.addr.port;
    tcp.close();
    const udp = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
    const udpPort = (udp.addr as Deno.NetAddr).port;
    udp.close();
    const cases: [string, string[], string[]][] = [
      [
        "client.ts",
        ["--port", String(tcpPort)],
        [`client.ts: cannot connect to [::1]:${tcpPort}: connection refused`],
      ],
      [
        "udp_client.ts",
        ["--port", String(udpPort), "--expect-reply", "--retries", "0", "--timeout", "100"],
        [`no reply from [::1]:${udpPort} after 1 try`],
      ],
    ];
    for (const [script, args, stderr] of cases) {
      const client = runScript(script, ["--host", "[::1]", ...args]);
      await client.stdin.write(bytes("你好\n"));
      await client.stdin.close();
      const [out, err, status] = await within(
        WAIT_MS,
        script,
        Promise.all([client.stdout.rest(), client.stderr.rest(), client.child.status]),
      );
      assert.deepEqual({ code: status.code, stdout: out, stderr: err }, {
        code: 1,
        stdout: [],
        stderr,
      }, script);
    }
  },
});
