/**
 * `--reuse-port` (issue 14): several server.ts processes share one address and
 * port (SO_REUSEPORT), and Linux spreads new connections over them. The
 * scripts run as processes on 127.0.0.1; the first takes port 0 and the others
 * join the port it printed. Without the flag on every one of them, a busy port
 * stays the one-line `address already in use`.
 *
 * UDP cannot do it yet: Deno 2.9.6 has no SO_REUSEPORT for datagram sockets,
 * so udp_server.ts refuses the flag, and the last test here fails the day Deno
 * can, as a reminder to give it to udp_server.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  bytes,
  LineReader,
  NEEDS_SPAWN,
  ROOT,
  runScript,
  type Script,
  WatchedLog,
  within,
} from "./util.ts";

/** Every wait here is for something broken code would never do: it fails after this. */
const WAIT_MS = 10_000;
/** Connections made to a shared port: the chance that the hash sends all to one of two is 2^-63. */
const CONNECTIONS = 64;
/** Fewer over TLS, whose handshakes are slower; 2^-31 is still never. */
const TLS_CONNECTIONS = 32;

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: NEEDS_SPAWN, fn });

/**
 * A server script running as a process, its log read as it comes (each line
 * without its time stamp) so that a test can wait for a line. Disposing it
 * stops it with SIGTERM, if `stop()` has not.
 */
class ServerProcess implements AsyncDisposable {
  readonly script: Script;
  readonly port: number;
  readonly #log = new WatchedLog();
  #reading?: Promise<void>;
  #stopped?: Promise<{ code: number; stderr: string[] }>;

  private constructor(script: Script, port: number) {
    this.script = script;
    this.port = port;
  }

  /** Runs `name` with `args` and waits for its `listening on HOST:PORT (...)` line. */
  static async start(
    name: string,
    args: string[],
    permissions?: string[],
  ): Promise<ServerProcess> {
    const script = runScript(name, args, { serverLog: true, permissions });
    const line = await within(WAIT_MS, `${name}'s listening line`, script.stdout.line());
    const port = /^listening on \S+:(\d+) \(/.exec(line ?? "")?.[1];
    if (port === undefined) {
      try {
        script.child.kill("SIGTERM");
      } catch {
        // It had exited, as it does when it cannot listen.
      }
      await script.stdin.close().catch(() => {});
      const [stderr] = await within(
        WAIT_MS,
        `${name}'s exit`,
        Promise.all([script.stderr.rest(), script.child.status, script.stdout.rest()]),
      );
      throw new Error(`${name} ${args.join(" ")} did not start: ${stderr.join(" ") || line}`);
    }
    const server = new ServerProcess(script, Number(port));
    server.#reading = server.#read();
    return server;
  }

  async #read(): Promise<void> {
    while (true) {
      const line = await this.script.stdout.line();
      if (line === null) return;
      this.#log.line(line);
    }
  }

  /** Every log line so far. */
  get logs(): string[] {
    return this.#log.lines;
  }

  /** The first log line, past or future, that `match` accepts (unbounded: wrap it in `within`). */
  waitLog(match: (line: string) => boolean): Promise<string> {
    return this.#log.waitFor(match);
  }

  /** Stops it with SIGTERM: its exit code and what it wrote on stderr. */
  stop(): Promise<{ code: number; stderr: string[] }> {
    return this.#stopped ??= (async () => {
      try {
        this.script.child.kill("SIGTERM");
      } catch {
        // It had exited.
      }
      await this.script.stdin.close().catch(() => {});
      const [status, stderr] = await within(
        WAIT_MS,
        "the server's exit",
        Promise.all([this.script.child.status, this.script.stderr.rest(), this.#reading]),
      );
      return { code: status.code, stderr };
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Runs a script that should fail at once: its exit code and its stderr. */
async function runToEnd(
  name: string,
  args: string[],
): Promise<{ code: number; stderr: string[] }> {
  const script = runScript(name, args);
  await script.stdin.close();
  const [status, stderr] = await within(
    WAIT_MS,
    `${name} ${args.join(" ")}`,
    Promise.all([script.child.status, script.stderr.rest(), script.stdout.rest()]),
  );
  return { code: status.code, stderr };
}

/** A connection whose lines can be read; closed when disposed. */
class Peer implements Disposable {
  readonly conn: Deno.Conn;
  readonly lines: LineReader;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.lines = new LineReader(conn);
  }

  /** Its address as the server logs it. */
  get address(): string {
    return `127.0.0.1:${(this.conn.localAddr as Deno.NetAddr).port}`;
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }
}

/** Closes every peer (again, if it is closed). */
function closePeers(peers: Peer[]): void {
  for (const peer of peers) peer[Symbol.dispose]();
}

/**
 * Which of `servers` logged each peer's `connected ADDRESS id=N NAME` line:
 * their indexes, one per peer. Fails if one is never logged.
 */
function servedBy(servers: ServerProcess[], peers: Peer[]): Promise<number[]> {
  return within(
    WAIT_MS,
    "a connected line for every client",
    Promise.all(
      peers.map((peer) =>
        Promise.race(
          servers.map((server, index) =>
            server.waitLog((line) => line.startsWith(`connected ${peer.address} `)).then(() =>
              index
            )
          ),
        )
      ),
    ),
  );
}

/** How many of `indexes` are each of 0..n-1. */
function tally(indexes: number[], n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const index of indexes) counts[index]++;
  return counts;
}

// ---- TCP

test("server.ts --reuse-port: two processes share one port, the kernel spreads 64 connections over both, each with its own room", async () => {
  await using first = await ServerProcess.start("server.ts", ["--port", "0", "--reuse-port"]);
  await using second = await ServerProcess.start("server.ts", [
    "--port",
    String(first.port),
    "--reuse-port",
  ]);
  assert.equal(second.port, first.port);

  const peers: Peer[] = [];
  using _ = { [Symbol.dispose]: () => closePeers(peers) };
  for (let i = 0; i < CONNECTIONS; i++) {
    const peer = new Peer(await Deno.connect({ hostname: "127.0.0.1", port: first.port }));
    peers.push(peer);
    const welcome = await within(WAIT_MS, "a welcome", peer.lines.line());
    assert.match(welcome ?? "", /^\* welcome, you are user\d+ /);
  }

  const counts = tally(await servedBy([first, second], peers), 2);
  assert.ok(counts.every((count) => count > 0), `connections per process: ${counts}`);
  // One room would never number two members 1: each process counts its own.
  for (const server of [first, second]) {
    assert.ok(server.logs.some((line) => /^connected \S+ id=1 user1$/.test(line)), "user1");
  }

  // Either process can go; the other keeps the port and serves on. (The
  // clients close first, so that no shutdown waits for their FINs.)
  closePeers(peers);
  assert.deepEqual(await first.stop(), { code: 0, stderr: [] });
  const late = new Peer(await Deno.connect({ hostname: "127.0.0.1", port: second.port }));
  peers.push(late);
  assert.match(
    (await within(WAIT_MS, "the welcome after the first left", late.lines.line())) ?? "",
    /^\* welcome, you are user\d+ /,
  );
  closePeers(peers);
  assert.deepEqual(await second.stop(), { code: 0, stderr: [] });
});

// A port is shared only among processes that all asked for it.
for (
  const [firstFlags, secondFlags, which] of [
    [[], [], "neither with --reuse-port"],
    [["--reuse-port"], [], "the first with --reuse-port, the second without"],
    [[], ["--reuse-port"], "the second with --reuse-port, the first without"],
  ] as const
) {
  test(`server.ts on a port in use, ${which}: exit 1, one line, address already in use`, async () => {
    await using first = await ServerProcess.start("server.ts", ["--port", "0", ...firstFlags]);
    const second = await runToEnd("server.ts", ["--port", String(first.port), ...secondFlags]);
    assert.deepEqual(second, {
      code: 1,
      stderr: [`server.ts: cannot listen on 127.0.0.1:${first.port}: address already in use`],
    });
  });
}

// ---- TLS: node:tls listens with reusePort too

/** Runs a program to its end; fails, with its stderr, unless it exits 0. */
async function run(program: string, args: string[]): Promise<string> {
  const output = await within(
    WAIT_MS,
    `${program} ${args.join(" ")}`,
    new Deno.Command(program, { args, cwd: ROOT, stdout: "piped", stderr: "piped" }).output(),
  );
  const decoder = new TextDecoder();
  assert.equal(output.code, 0, `${program} ${args.join(" ")}: ${decoder.decode(output.stderr)}`);
  return decoder.decode(output.stdout);
}

test("server.ts --tls-cert --reuse-port: two TLS processes share one port and both serve", async () => {
  // As in tls_test.ts: `deno task cert` in a folder from mktemp -d (the suite has no --allow-write).
  const dir = (await run("mktemp", ["-d"])).trim();
  await using _dir = { [Symbol.asyncDispose]: async () => void await run("rm", ["-rf", dir]) };
  await run(Deno.execPath(), ["task", "--config", `${ROOT}deno.json`, "--cwd", dir, "cert"]);
  const cert = await Deno.readTextFile(`${dir}/cert.pem`);
  const tlsArgs = ["--tls-cert", `${dir}/cert.pem`, "--tls-key", `${dir}/key.pem`, "--reuse-port"];
  const permissions = ["--allow-net", `--allow-read=${dir}`];

  await using first = await ServerProcess.start(
    "server.ts",
    ["--port", "0", ...tlsArgs],
    permissions,
  );
  await using second = await ServerProcess.start(
    "server.ts",
    ["--port", String(first.port), ...tlsArgs],
    permissions,
  );

  const peers: Peer[] = [];
  using _ = { [Symbol.dispose]: () => closePeers(peers) };
  for (let i = 0; i < TLS_CONNECTIONS; i++) {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: first.port,
      caCerts: [cert],
    });
    const peer = new Peer(conn);
    peers.push(peer);
    const welcome = await within(WAIT_MS, "a welcome over TLS", peer.lines.line());
    assert.match(welcome ?? "", /^\* welcome, you are user\d+ /);
  }
  const counts = tally(await servedBy([first, second], peers), 2);
  assert.ok(counts.every((count) => count > 0), `TLS connections per process: ${counts}`);
  closePeers(peers);
  for (const server of [first, second]) {
    assert.deepEqual(await server.stop(), { code: 0, stderr: [] });
  }
});

// ---- UDP: refused, and why

test("udp_server.ts --reuse-port is refused in one line with exit 2: Deno cannot share a UDP port", async () => {
  assert.deepEqual(await runToEnd("udp_server.ts", ["--port", "0", "--reuse-port"]), {
    code: 2,
    stderr: [
      "udp_server.ts: --reuse-port works over TCP only: Deno cannot share a UDP port (no " +
      "SO_REUSEPORT for datagram sockets), so run one udp_server.ts per port (see --help)",
    ],
  });
});

test("udp_server.ts on the port of another: exit 1, one line, address already in use", async () => {
  await using first = await ServerProcess.start("udp_server.ts", ["--port", "0"]);
  assert.deepEqual(await runToEnd("udp_server.ts", ["--port", String(first.port)]), {
    code: 1,
    stderr: [`udp_server.ts: cannot listen on 127.0.0.1:${first.port}: address already in use`],
  });
});

Deno.test("Deno.listenDatagram cannot share a UDP port yet: reusePort is not an option, reuseAddress gives the newest socket every datagram", async () => {
  // If this fails, Deno can share a UDP port: pass reusePort in
  // startUdpServer and take the refusal out of udp_server.ts's main.
  type Options = Deno.UdpListenOptions & { transport: "udp" };
  const where = { transport: "udp", hostname: "127.0.0.1" } as const;
  const sockets: Deno.DatagramConn[] = [];
  using _ = { [Symbol.dispose]: () => sockets.forEach((socket) => socket.close()) };
  const open = (options: Options) => sockets[sockets.push(Deno.listenDatagram(options)) - 1];

  const holder = open({ ...where, port: 0, reusePort: true } as Options);
  const port = (holder.addr as Deno.NetAddr).port;
  assert.throws(() => open({ ...where, port, reusePort: true } as Options), Deno.errors.AddrInUse);

  // SO_REUSEADDR on Linux: both bind, and the last one bound takes every datagram.
  const older = open({ ...where, port: 0, reuseAddress: true });
  const shared = { ...where, port: (older.addr as Deno.NetAddr).port };
  const newer = open({ ...shared, reuseAddress: true });
  const senders = Array.from({ length: 16 }, () => open({ ...where, port: 0 }));
  for (const sender of senders) await sender.send(bytes("hello"), shared);
  for (let i = 0; i < senders.length; i++) {
    const what = `datagram ${i + 1} of ${senders.length} on the newer socket`;
    await within(WAIT_MS, what, newer.receive());
  }
});
