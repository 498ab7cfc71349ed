/**
 * Tests of the servers' console and log (cli.ts `consoleLog`, `serve`): every
 * log line stamped with the time, `--no-console`, and a server started in the
 * background of an interactive shell, through a real pseudo-terminal.
 */
import assert from "node:assert/strict";
import { CONSOLE_OFF, consoleLog } from "../cli.ts";
import {
  bytes,
  finish,
  LineReader,
  LOG_STAMP,
  NEEDS_SPAWN,
  ROOT,
  runProgram,
  runScript,
  ServerLogReader,
  startScriptServer,
  within,
} from "./util.ts";
import { TestPeer } from "./udp_util.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: NEEDS_SPAWN, fn });

/** A console that keeps what is written to it. */
function memoryConsole() {
  const written: string[] = [];
  return {
    written,
    write(data: Uint8Array): Promise<number> {
      written.push(new TextDecoder().decode(data));
      return Promise.resolve(data.length);
    },
  };
}

Deno.test("consoleLog() with a clock begins each line with its time in ISO 8601, UTC", async () => {
  const out = memoryConsole();
  let now = Date.UTC(2026, 10, 30, 2, 45, 0, 123);
  const log = consoleLog(out, { clock: () => now });
  log.line("listening on 127.0.0.1:9090 (tcp, chat)");
  log.line("connected 127.0.0.1:53422 id=1 user1");
  now += 1001;
  log.line("<user1> 你好");
  await log.flushed();
  assert.deepEqual(out.written.join("").split("\n"), [
    "2026-11-30T02:45:00.123Z listening on 127.0.0.1:9090 (tcp, chat)",
    "2026-11-30T02:45:00.123Z connected 127.0.0.1:53422 id=1 user1",
    "2026-11-30T02:45:01.124Z <user1> 你好",
    "",
  ]);
});

Deno.test("ServerLogReader takes the stamp off each log line and fails on a line without one", async () => {
  const source = (text: string) => {
    const data = new TextEncoder().encode(text);
    let done = false;
    return {
      read(buffer: Uint8Array): Promise<number | null> {
        if (done) return Promise.resolve(null);
        done = true;
        buffer.set(data);
        return Promise.resolve(data.length);
      },
    };
  };
  const log = new ServerLogReader(
    source("2026-11-30T02:45:00.123Z listening on x\nshutting down\n"),
  );
  assert.equal(await log.line(), "listening on x");
  await assert.rejects(log.line(), /without its time stamp: "shutting down"/);
  const bad = new ServerLogReader(source("2026-13-30T02:45:00.123Z listening on x\n"));
  await assert.rejects(bad.until(() => true), /without its time stamp/);
});

test("server.ts stamps every log line with the time it happened, UTC, to the millisecond", async () => {
  const before = Date.now();
  // Read raw, not through the helpers that take the stamp off.
  const server = runScript("server.ts", ["--port", "0"]);
  try {
    const listening = (await within(10_000, "listening line", server.stdout.line()))!;
    assert.match(
      listening,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z listening on 127\.0\.0\.1:\d+ \(tcp, chat\)$/,
    );
    const stamp = LOG_STAMP.exec(listening)![1];
    const at = Date.parse(stamp);
    assert.ok(before - 1 <= at && at <= Date.now(), `${stamp} is not the time of the start`);
    const port = Number(/:(\d+) \(/.exec(listening)![1]);
    using _conn = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.match(
      (await within(5000, "connected line", server.stdout.line()))!,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z connected 127\.0\.0\.1:\d+ id=1 user1$/,
    );
    await server.stdin.write(bytes("/list\n"));
    assert.match(
      (await within(5000, "list line", server.stdout.line()))!,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \* id=1 name=user1 addr=/,
    );
  } finally {
    server.child.kill("SIGTERM");
    await finish(server);
  }
});

test("udp_server.ts --no-console never reads stdin, and says how to stop it", async () => {
  const server = await startScriptServer("udp_server.ts", ["--mode", "echo", "--no-console"]);
  assert.equal(await server.stdout.line(), CONSOLE_OFF);
  await server.stdin.write(bytes("/help\n/quit\n"));
  await server.stdin.close();
  using peer = new TestPeer();
  await peer.send({ transport: "udp", hostname: "127.0.0.1", port: server.port }, "还在吗\n");
  assert.equal(await peer.next(), "还在吗");
  server.child.kill("SIGTERM");
  // Had the console read stdin, its /quit would have left the datagram
  // unanswered, and /help and the end of input would be in the log.
  assert.deepEqual(await server.stdout.rest(), [
    "datagram from 127.0.0.1:" + peer.addr.port + ": 10 bytes",
    "shutting down",
  ]);
  assert.equal((await finish(server)).code, 0);
});

// Runs a server script as a background job (`&`) of an interactive bash with
// job control, on a pseudo-terminal, as a user at a terminal would. Prints
// "PORT PID" once the server listens, drains the terminal while its stdin is
// open (the server logs to it), then kills the job and the shell. Everything
// ends within 60 s whatever happens (alarm).
const BACKGROUND_JOB = String.raw`
import os, pty, re, select, shlex, signal, sys, time
signal.alarm(60)
command = " ".join(shlex.quote(arg) for arg in sys.argv[1:])
pid, fd = pty.fork()
if pid == 0:
    env = dict(os.environ, PS1="$ ", TERM="dumb", HISTFILE="/dev/null", NO_COLOR="1")
    os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
os.write(fd, (command + " & echo BGPID=$!\n").encode())
seen, job, port = b"", None, None
deadline = time.monotonic() + 20
while (job is None or port is None) and time.monotonic() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        seen += os.read(fd, 4096)
    found = re.search(rb"BGPID=(\d+)", seen)
    job = found and int(found.group(1))
    found = re.search(rb"listening on 127\.0\.0\.1:(\d+)", seen)
    port = found and int(found.group(1))
if job is None or port is None:
    try:
        state = open(f"/proc/{job}/stat").read().rsplit(") ", 1)[1].split()[0]
    except (OSError, TypeError):
        state = "unknown"
    sys.stderr.write(f"no listening line (job state {state}); the terminal: {seen.decode(errors='replace')}")
else:
    print(port, job, flush=True)
    while True:
        ready = select.select([fd, sys.stdin], [], [])[0]
        if sys.stdin in ready and sys.stdin.readline() == "":
            break
        if fd in ready:
            try:
                os.read(fd, 4096)
            except OSError:
                break
for victim in [job, pid]:
    if victim:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
os.waitpid(pid, 0)
`;

/** Sends SIGKILL to `pid`, which may be gone already. */
function killQuietly(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** State, process group and the terminal's foreground group of a process (/proc/PID/stat). */
async function processState(pid: number): Promise<{ state: string; group: string; tty: string }> {
  // Deno lets only --allow-all read another process's /proc files: `cat` can.
  const output = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const fields = new TextDecoder().decode(output.stdout).replace(/^.*\) /s, "").split(" ");
  return { state: fields[0], group: fields[2], tty: fields[5] };
}

for (const script of ["server.ts", "udp_server.ts"]) {
  test(`${script} --no-console started with & from an interactive shell keeps serving, never stopped`, async () => {
    const shell = runProgram("python3", [
      "-c",
      BACKGROUND_JOB,
      Deno.execPath(),
      "run",
      "--quiet",
      "--allow-net",
      `${ROOT}${script}`,
      "--port",
      "0",
      "--mode",
      "echo",
      "--no-console",
    ]);
    let job: number | undefined;
    try {
      const started = await within(30_000, "the background job", shell.stdout.line());
      if (started === null) assert.fail((await shell.stderr.rest()).join("\n"));
      const [port, pid] = started.split(" ").map(Number);
      job = pid;
      if (script === "server.ts") {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(bytes("still served 你好\n"));
        assert.equal(await within(5000, "echo", new LineReader(conn).line()), "still served 你好");
      } else {
        using peer = new TestPeer();
        await peer.send({ transport: "udp", hostname: "127.0.0.1", port }, "still served 你好\n");
        assert.equal(await peer.next(), "still served 你好");
      }
      const { state, group, tty } = await processState(pid);
      assert.notEqual(group, tty, "the server is not a background job of the terminal");
      assert.notEqual(state, "T", "the server is stopped");
    } finally {
      // The end of its stdin makes the script kill the job and the shell; if
      // it does not exit, the test kills both.
      await shell.stdin.close().catch(() => {});
      const exited = await within(10_000, "the shell's exit", shell.child.status).catch(() => {});
      if (exited === undefined) {
        shell.child.kill("SIGKILL");
        if (job !== undefined) killQuietly(job);
        await shell.child.status;
      }
      await Promise.all([shell.stdout.rest(), shell.stderr.rest()]);
    }
  });
}
