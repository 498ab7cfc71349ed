#!/usr/bin/env -S deno run --allow-net --allow-run
/**
 * One room shared over Redis, to try on this machine: starts a `redis-server`
 * on 127.0.0.1 (port 6379 if it is free, else any free port; persistence
 * off) and N `server.ts` instances with `--redis` and `--reuse-port` on one
 * port, prints how to connect, and on Ctrl-C (or SIGTERM) stops them all:
 * the instances first, so each leaves the room in Redis, then Redis.
 *
 * Loopback only: a room spread over machines is started by hand (README).
 * The instances' logs come through here, each line after `[N] `.
 *
 * Usage: deno task redis-room [--instances N] [--port PORT] [--room NAME]
 *
 * @example
 * ```sh
 * deno task redis-room                 # 2 instances on 127.0.0.1:9090
 * deno task client --port 9090         # then, in two other terminals
 * ```
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  DEFAULT_PORT,
  DEFAULT_ROOM,
  errorText,
  parseFlags,
  parseInteger,
  parsePort,
  runMain,
  RuntimeError,
  UsageError,
} from "../cli.ts";

const SCRIPT = "tools/redis_room.ts";
const HOST = "127.0.0.1";
/** Redis's own port, taken when it is free: what a user would type. */
const REDIS_DEFAULT_PORT = 6379;
const DEFAULT_INSTANCES = 2;
/** One a core is the point; past this, a typo. */
const MAX_INSTANCES = 16;
/** Each wait for a process to start: Redis's ready line, an instance's listening line. */
const START_TIMEOUT_MS = 30_000;
/** How long a process may take to stop after SIGTERM before it gets SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;
/** A log line longer than this is passed on in pieces: no child makes this process buffer more. */
const MAX_LOG_LINE = 64 * 1024;
const SERVER_PATH = fileURLToPath(new URL("../server.ts", import.meta.url));

const USAGE = `Usage: deno task redis-room [options]

Starts a redis-server on ${HOST} (port ${REDIS_DEFAULT_PORT} if free, else any free port; no
persistence) and N server.ts instances sharing one room over it, all on one port
(--reuse-port: the kernel spreads new connections over them). Ctrl-C stops them all.

Options:
  --instances N  server.ts processes (default ${DEFAULT_INSTANCES}, at most ${MAX_INSTANCES})
  --port PORT    the port they share on ${HOST}, 0 for any free one (default ${DEFAULT_PORT})
  --room NAME    the room's name in Redis (default ${DEFAULT_ROOM})
  --help         show this help`;

/** A child process whose output is read line by line as it comes. */
interface Child {
  name: string;
  process: Deno.ChildProcess;
  /** Its last lines, for saying why it failed. */
  last: string[];
}

/**
 * Calls `onLine` for each line of `stream` (without its "\n"); a line over
 * {@linkcode MAX_LOG_LINE} is cut into pieces. Resolves at the end of the stream.
 */
async function eachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let newline;
    while ((newline = pending.indexOf("\n")) !== -1) {
      onLine(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
    while (pending.length > MAX_LOG_LINE) {
      onLine(pending.slice(0, MAX_LOG_LINE));
      pending = pending.slice(MAX_LOG_LINE);
    }
  }
  if (pending) onLine(pending);
}

/**
 * Starts `command` with its output read line by line: each goes to `onLine`
 * and is kept among the child's last lines. A missing program is a
 * {@linkcode RuntimeError} saying what to install.
 */
function start(
  name: string,
  command: string,
  args: string[],
  onLine: (line: string, stream: "stdout" | "stderr") => void,
): Child {
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "not found: install it (Debian: apt-get install redis-server)"
      : errorText(error);
    throw new RuntimeError(`${SCRIPT}: cannot start ${command}: ${why}`);
  }
  const child: Child = { name, process, last: [] };
  const keep = (stream: "stdout" | "stderr") => (line: string) => {
    child.last.push(line);
    if (child.last.length > 5) child.last.shift();
    onLine(line, stream);
  };
  eachLine(process.stdout, keep("stdout"));
  eachLine(process.stderr, keep("stderr"));
  return child;
}

/**
 * Waits until `ready` resolves, failing with the child's last words if it
 * exits first or takes longer than {@linkcode START_TIMEOUT_MS}.
 */
async function whenReady<T>(child: Child, what: string, ready: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new RuntimeError(`${SCRIPT}: ${child.name}: no ${what} after ${START_TIMEOUT_MS} ms`),
        ),
      START_TIMEOUT_MS,
    );
  });
  const exited = child.process.status.then((status): never => {
    throw new RuntimeError(
      `${SCRIPT}: ${child.name} exited (code ${status.code}) before its ${what}: ` +
        (child.last.join(" | ") || "(no output)"),
    );
  });
  try {
    return await Promise.race([ready, late, exited]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends SIGTERM and waits for the exit; SIGKILL after {@linkcode STOP_TIMEOUT_MS}. */
async function stop(child: Child): Promise<void> {
  const { process } = child;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) =>
    timer = setTimeout(() => resolve("late"), STOP_TIMEOUT_MS)
  );
  try {
    process.kill("SIGTERM");
  } catch {
    // It had exited already.
  }
  if (await Promise.race([process.status, late]) === "late") {
    console.error(
      `${SCRIPT}: ${child.name} still running ${STOP_TIMEOUT_MS} ms after SIGTERM: SIGKILL`,
    );
    try {
      process.kill("SIGKILL");
    } catch {
      // It exited just now.
    }
    await process.status;
  }
  clearTimeout(timer);
}

/** 6379 when nothing listens there on 127.0.0.1, else a free port (bound, read back, closed). */
function redisPort(): number {
  for (const port of [REDIS_DEFAULT_PORT, 0]) {
    try {
      const listener = Deno.listen({ hostname: HOST, port });
      const free = (listener.addr as Deno.NetAddr).port;
      listener.close();
      return free;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new RuntimeError(`${SCRIPT}: no free port on ${HOST} for redis-server`);
}

/** Starts one `server.ts` instance on `port`; resolves with the port it says it listens on. */
async function startInstance(
  n: number,
  port: number,
  redisUrl: string,
  room: string,
  children: Child[],
): Promise<number> {
  let listening: (port: number) => void;
  const ready = new Promise<number>((resolve) => listening = resolve);
  const child = start(
    `instance ${n}`,
    Deno.execPath(),
    [
      ...["run", "--quiet", "--allow-net", SERVER_PATH, "--host", HOST, "--port", String(port)],
      ...["--reuse-port", "--redis", redisUrl, "--room", room, "--no-console"],
    ],
    (line, stream) => {
      (stream === "stdout" ? console.log : console.error)(`[${n}] ${line}`);
      const match = / listening on \S+:(\d+) \(/.exec(line);
      if (match) listening(Number(match[1]));
    },
  );
  children.push(child);
  return await whenReady(child, "listening line", ready);
}

async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    instances: { type: "string", default: String(DEFAULT_INSTANCES) },
    port: { type: "string", default: String(DEFAULT_PORT) },
    room: { type: "string", default: DEFAULT_ROOM },
    help: { type: "boolean", default: false },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const instances = parseInteger("--instances", flags.instances, 1, MAX_INSTANCES);
  let port = parsePort(flags.port);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(flags.room)) {
    throw new UsageError(`Cannot parse --room "${flags.room}": use 1-64 of A-Z a-z 0-9 _ . -`);
  }

  // Stop on Ctrl-C or SIGTERM from here on, whatever has started by then.
  // (Ctrl-C in a terminal reaches the children too: they stop by themselves.)
  let interrupted: () => void;
  const interrupt = new Promise<"signal">((resolve) => interrupted = () => resolve("signal"));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => interrupted());
  }
  const children: Child[] = [];
  let redis: Child | undefined;
  try {
    // Persistence off: no RDB snapshot (`save ""`), no append-only file; a trial room
    // leaves nothing on disk (https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/).
    const redisAt = redisPort();
    let redisReady: () => void;
    const redisReadyLine = new Promise<void>((resolve) => redisReady = resolve);
    redis = start(
      "redis-server",
      "redis-server",
      ["--port", String(redisAt), "--bind", HOST, "--save", "", "--appendonly", "no"],
      (line) => {
        if (line.includes("Ready to accept connections")) redisReady();
      },
    );
    await Promise.race([whenReady(redis, "ready line", redisReadyLine), interrupt]);
    const redisUrl = `redis://${HOST}:${redisAt}`;

    // The first instance takes the port (with --port 0, a free one), the others join it.
    const first = startInstance(1, port, redisUrl, flags.room, children);
    const taken = await Promise.race([first, interrupt]);
    if (taken === "signal") return 0;
    port = taken;
    const rest = [];
    for (let n = 2; n <= instances; n++) {
      rest.push(startInstance(n, port, redisUrl, flags.room, children));
    }
    if (await Promise.race([Promise.all(rest), interrupt]) === "signal") return 0;

    const pids = children.map((child) => child.process.pid).join(", ");
    console.log(
      `room ${flags.room} on ${HOST}:${port}, ${instances} instance${instances > 1 ? "s" : ""} ` +
        `(pids ${pids}), redis-server ${HOST}:${redisAt} (pid ${redis.process.pid}, no persistence)`,
    );
    console.log(
      `connect with: deno task client --port ${port}   (or: nc ${HOST} ${port}); ` +
        "Ctrl-C stops them all",
    );
    // Until Ctrl-C, or until one of them exits, which ends the trial.
    const gone = [redis, ...children].map((child) =>
      child.process.status.then((status) => ({ child, status }))
    );
    const end = await Promise.race([interrupt, ...gone]);
    if (end === "signal") return 0;
    console.error(
      `${SCRIPT}: ${end.child.name} exited (code ${end.status.code}): stopping the rest` +
        (end.child.last.length ? `; its last words: ${end.child.last.join(" | ")}` : ""),
    );
    return 1;
  } finally {
    // The instances first, so each takes its members out of the room in Redis.
    await Promise.all(children.map(stop));
    if (redis) await stop(redis);
    console.log("stopped: every instance and redis-server");
  }
}

if (import.meta.main) runMain(SCRIPT, () => main(Deno.args));
