/**
 * `deno task redis-room` (tools/redis_room.ts): the task's own command, run
 * with two instances on a free port, starts a redis-server and two server.ts
 * processes sharing one room and one port; a client on each instance chats
 * with the other; SIGINT stops them all, and no process is left. Loopback
 * only; every wait is bounded.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  LineReader,
  NEEDS_SPAWN,
  ROOT,
  runProgram,
  type Script,
  TestClient,
  within,
} from "./util.ts";

/** Every wait here is for something broken code would never do: it fails after this. */
const WAIT_MS = 30_000;
/** Connections tried until each instance holds one: the chance that all go to one of two is 2^-63. */
const MAX_TRIES = 64;

/** The task's command from deno.json, run with this `deno`: `run`, its permissions, the script. */
function taskArgs(): string[] {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  const [deno, ...args] = (tasks["redis-room"] as string).split(" ");
  assert.equal(deno, "deno");
  return args;
}

/** The script's stdout, read as it comes, so that a test can wait for a line. */
class Output {
  readonly lines: string[] = [];
  readonly done: Promise<void>;
  #waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];

  constructor(reader: LineReader) {
    this.done = (async () => {
      for (let line = await reader.line(); line !== null; line = await reader.line()) {
        this.lines.push(line);
        this.#waiters = this.#waiters.filter((waiter) => {
          if (!waiter.match(line)) return true;
          waiter.resolve(line);
          return false;
        });
      }
    })();
  }

  /** The first line, past or to come, that `match` accepts. */
  wait(match: (line: string) => boolean): Promise<string> {
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }
}

/**
 * Those of `pids` that still exist, zombies included, as `ps` lists them
 * (Deno keeps /proc behind --allow-all).
 */
async function existing(pids: number[]): Promise<number[]> {
  const { stdout } = await new Deno.Command("ps", {
    args: ["-o", "pid=", "-p", pids.join(",")],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line.trim()).map(Number);
}

async function refused(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused;
  }
}

Deno.test({
  name:
    "redis-room task starts Redis and two instances on one port, clients on both chat, SIGINT stops every process",
  ignore: NEEDS_SPAWN,
  async fn() {
    const script: Script = runProgram(
      Deno.execPath(),
      [...taskArgs(), "--instances", "2", "--port", "0"],
      { NO_COLOR: "1" },
    );
    const output = new Output(script.stdout);
    const stderr = script.stderr.rest();
    const clients = new Map<number, TestClient>();
    let pids: number[] = [];
    let exited = false;
    try {
      const room = await within(
        WAIT_MS,
        "the room's line",
        output.wait((line) => line.startsWith("room main on ")),
      );
      const match =
        /^room main on 127\.0\.0\.1:(\d+), 2 instances \(pids (\d+), (\d+)\), redis-server 127\.0\.0\.1:(\d+) \(pid (\d+), no persistence\)$/
          .exec(room);
      assert.ok(match, room);
      const [port, pid1, pid2, redisPort, redisPid] = match.slice(1).map(Number);
      pids = [pid1, pid2, redisPid];
      assert.deepEqual(await existing(pids), pids.toSorted((x, y) => x - y), "all three running");
      await within(
        WAIT_MS,
        "how to connect",
        output.wait((line) => line.startsWith(`connect with: deno task client --port ${port}`)),
      );

      // Connect until each instance holds a client; the server's log says which took it.
      for (let tries = 0; clients.size < 2 && tries < MAX_TRIES; tries++) {
        const client = new TestClient(await Deno.connect({ hostname: "127.0.0.1", port }));
        const address = `127.0.0.1:${client.conn.localAddr.port}`;
        const accepted = await within(
          WAIT_MS,
          `the log line for ${address}`,
          output.wait((line) => line.includes(` connected ${address} `)),
        );
        const instance = Number(/^\[(\d)\] /.exec(accepted)![1]);
        if (clients.has(instance)) client[Symbol.dispose]();
        else clients.set(instance, client);
      }
      assert.equal(clients.size, 2, "a client on each instance");
      const [a, b] = [clients.get(1)!, clients.get(2)!];
      const names = await within(
        WAIT_MS,
        "the welcomes",
        Promise.all([a, b].map((client) => client.until(/^\* welcome, you are /))),
      );
      const [nameA, nameB] = names.map((line) => /you are (\S+) /.exec(line)![1]);

      // Chinese, an emoji with a skin tone and a combining mark: whole, across instances.
      await a.send("你好，另一个实例 👋🏽 e\u0301\n");
      await within(WAIT_MS, "a's line at b", b.until(`<${nameA}> 你好，另一个实例 👋🏽 e\u0301`));
      await b.send("收到 ✅\n");
      await within(WAIT_MS, "b's line at a", a.until(`<${nameB}> 收到 ✅`));

      script.child.kill("SIGINT");
      const status = await within(WAIT_MS, "the script's exit", script.child.status);
      exited = true;
      await within(WAIT_MS, "the script's output", output.done);
      assert.equal(status.code, 0, (await stderr).join("\n"));
      assert.ok(output.lines.includes("stopped: every instance and redis-server"));
      // The script waits for each child before it exits: none is left, not even a zombie.
      assert.deepEqual(await existing(pids), [], "no process left");
      assert.ok(await refused(port), "the room's port is closed");
      assert.ok(await refused(redisPort), "Redis's port is closed");
      // Each client's server closed its connection as it shut down: the read ends.
      for (const client of [a, b]) await within(WAIT_MS, "end of stream", client.lines.rest());
    } finally {
      for (const client of clients.values()) client[Symbol.dispose]();
      if (!exited) {
        // A failed test must not leave a room running: the script first, then what it started.
        script.child.kill("SIGINT");
        await within(WAIT_MS, "the script's exit", script.child.status).catch(() => {
          // Only the pids it printed, and only if it did not stop them within the wait.
          for (const pid of pids) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // Gone already.
            }
          }
          script.child.kill("SIGKILL");
        });
      }
      await script.stdin.close().catch(() => {});
      await within(WAIT_MS, "the script's output", Promise.all([output.done, stderr]));
    }
  },
});

Deno.test({
  name: "redis-room task refuses a bad flag with one line and exit code 2",
  ignore: NEEDS_SPAWN,
  async fn() {
    const script = runProgram(Deno.execPath(), [...taskArgs(), "--instances", "0"], {
      NO_COLOR: "1",
    });
    await script.stdin.close();
    const [status, stdout, stderr] = await within(
      WAIT_MS,
      "the script's exit",
      Promise.all([script.child.status, script.stdout.rest(), script.stderr.rest()]),
    );
    assert.equal(status.code, 2);
    assert.deepEqual(stdout, []);
    assert.equal(stderr.length, 1, stderr.join("\n"));
    assert.match(stderr[0], /^tools\/redis_room\.ts: .*--instances.* \(see --help\)$/);
  },
});
