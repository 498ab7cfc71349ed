#!/usr/bin/env -S deno run -A
/**
 * netchat's benchmark: runs netchat's servers and their peers side by side on
 * loopback, with the same load generator, and prints one table of rates,
 * latencies, CPU use and ratios; writes `bench/results.json` and
 * `bench/ratios.svg`.
 *
 * The C load generator and the reference servers in this folder are copies of
 * the shared benchmark yardstick (`loadgen.c`, `echo_epoll.c`, `udp_echo.c`,
 * `chat_epoll.c`, `*_node.mjs`), so the project can measure itself alone.
 *
 * Method: every server is pinned to core 0 and the load generator to core 1;
 * all servers of a scenario run in the same invocation, in alternating order
 * between repeats; ratios against the scenario's baseline (Node, or
 * `ncat --chat` for chat fan-out) are what to quote, since absolute rates move
 * by up to ~20% between runs. The room shared over Redis (chat-redis) is
 * measured against the in-process room, with a `redis-server` of the run's
 * own on a free loopback port, persistence off, stopped at the end. Messages are 256 bytes. A row whose load
 * generator used ≥ 95% of its core measures the load generator, not the server.
 *
 * Usage: deno task bench [--duration SECS] [--repeats N] [--only LIST]
 *
 * @example
 * ```sh
 * deno task bench --only tcp-pingpong,idle --repeats 1
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { BYTES_PER_ITERATION } from "./line_buffer_bench.ts";

const BENCH_DIR = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const BUILD_DIR = `${BENCH_DIR}build/`;
const LOG_DIR = `${BUILD_DIR}logs/`;
const RESULTS_PATH = `${BENCH_DIR}results.json`;
const CHART_PATH = `${BENCH_DIR}ratios.svg`;

const SERVER_CORE = "0";
const LOAD_CORE = "1";
const HOST = "127.0.0.1";
const MESSAGE_BYTES = 256;
const DEFAULT_DURATION_S = 4;
const WARMUP_S = 1;
const DEFAULT_REPEATS = 2;
/** At or above this, the load generator was the limit, not the server. */
const LOAD_BOUND_CPU_PCT = 95;
/** At or above this, other processes on the machine were busy enough to disturb the run. */
const BUSY_MACHINE_CPU_PCT = 10;
/** The whole run stops starting new measurements after this. */
const TIME_BUDGET_MS = 400_000;
/** Disturbed runs are repeated only before this, leaving time for the rest. */
const RETRY_BUDGET_MS = 240_000;
const SERVER_READY_TIMEOUT_MS = 10_000;
const IDLE_CONNECTIONS = 5000;
const IDLE_HOLD_S = 4;
/** netchat's idle memory per connection over the Deno idle floor's, at most (issue 15). */
const IDLE_FLOOR_TARGET = 1.05;
/** Measure the idle server this long after loadgen starts, even if it is still connecting. */
const IDLE_OPEN_LIMIT_MS = 20_000;
const FILE_LIMIT = 20_000;

type ServerId =
  | "netchat"
  | "node"
  | "ncat"
  | "c"
  | "deno-floor"
  | "netchat-redis-1"
  | "netchat-redis-2"
  | "redis";

interface ServerSpec {
  id: ServerId;
  /** The command, with `PORT` where the port goes and `REDIS` where the run's Redis URL goes. */
  command: string[];
  /** Processes started with this command on one port (`--reuse-port`); default 1. */
  instances?: number;
  /** A script that must exist for this server to run (netchat's, while they are written). */
  needs?: string;
  /** Ready when a log line matches this; otherwise when the port accepts a connection. */
  readyLine?: RegExp;
}

interface Scenario {
  id: string;
  title: string;
  unit: string;
  loadArgs: string[];
  servers: ServerSpec[];
  baseline: ServerId;
  /** netchat's target ratio to the baseline; none where the baseline is netchat itself. */
  target?: number;
  /** netchat's target ratio to the Deno floor of the same job, run in the same scenario (issue 15). */
  floorTarget?: number;
  /** chat-fanout: netchat's p99 must also be no worse than the baseline's. */
  p99NoWorse?: boolean;
  /** Runs per server at most, whatever `--repeats` says (a short row of secondary figures). */
  maxRepeats?: number;
}

/** One parsed `RESULT key=value ...` line of the load generator. */
type LoadResult = Record<string, string>;

interface Row {
  server: ServerId;
  status: "ok" | "missing" | "failed" | "skipped";
  note?: string;
  best?: LoadResult;
  runs: LoadResult[];
  /** Times the server exited between runs and was started again, and its last words. */
  restarts?: number;
  exitLog?: string;
  /** chat-redis: p50 and p99 over the baseline's (the in-process room's), in µs. */
  addedLatencyUs?: { p50: number; p99: number };
}

interface ScenarioResult {
  id: string;
  title: string;
  unit: string;
  loadArgs: string[];
  baseline: ServerId;
  target?: number;
  floorTarget?: number;
  rows: Row[];
  netchat?: { ratio: number; floorRatio?: number; p99Ratio?: number; met: boolean };
}

interface IdleRow {
  server: ServerId;
  status: "ok" | "missing" | "failed" | "skipped";
  note?: string;
  openSeconds?: number;
  /** Connections the server held (its open files, less those it had before). */
  held?: number;
  rssBeforeKb?: number;
  rssAfterKb?: number;
  kbPerConnection?: number;
}

interface MicroRow {
  name: string;
  bytes: number;
  avgNs: number;
  mbPerS: number;
}

const DENO = Deno.execPath();
// The least a Deno program can do for each job (issue 15): netchat's "/ floor"
// column is its rate over these, measured in the same run.
const ECHO_FLOOR: ServerSpec = {
  id: "deno-floor",
  command: [DENO, "run", "--allow-net", `${BENCH_DIR}echo_deno_floor.ts`, "PORT"],
  readyLine: /^listening/,
};
const CHAT_FLOOR: ServerSpec = {
  id: "deno-floor",
  command: [DENO, "run", "--allow-net", `${BENCH_DIR}chat_deno_floor.ts`, "PORT"],
  readyLine: /^listening/,
};
const ECHO_SERVERS: ServerSpec[] = [
  { id: "c", command: [`${BUILD_DIR}echo_epoll`, "PORT"], readyLine: /^listening/ },
  { id: "node", command: ["node", `${BENCH_DIR}echo_node.mjs`, "PORT"], readyLine: /^listening/ },
  ECHO_FLOOR,
  {
    id: "netchat",
    command: [DENO, "run", "--allow-net", `${ROOT}server.ts`, "--port", "PORT", "--mode", "echo"],
    needs: `${ROOT}server.ts`,
    readyLine: /listening on /,
  },
];
// The TLS echo row's certificate: made by build() as `deno task cert` makes one.
const CERT = `${BUILD_DIR}cert.pem`;
const KEY = `${BUILD_DIR}key.pem`;
const TLS_ECHO_SERVERS: ServerSpec[] = [
  {
    id: "node",
    command: ["node", `${BENCH_DIR}tls_echo_node.mjs`, "PORT", CERT, KEY],
    readyLine: /^listening/,
  },
  // ncat runs a cat per connection for --exec: a peer users have, not a fast one.
  {
    id: "ncat",
    command: [
      ...["ncat", "--ssl", "--ssl-cert", CERT, "--ssl-key", KEY, "-l", HOST, "PORT"],
      ...["--keep-open", "--max-conns", "1000", "--exec", "/bin/cat"],
    ],
  },
  {
    id: "netchat",
    command: [
      ...[DENO, "run", "--allow-net", `--allow-read=${CERT},${KEY}`, `${ROOT}server.ts`],
      ...["--port", "PORT", "--mode", "echo", "--tls-cert", CERT, "--tls-key", KEY],
    ],
    needs: `${ROOT}tls.ts`,
    readyLine: /listening on /,
  },
];
const UDP_SERVERS: ServerSpec[] = [
  { id: "c", command: [`${BUILD_DIR}udp_echo`, "PORT"], readyLine: /^listening/ },
  {
    id: "node",
    command: ["node", `${BENCH_DIR}udp_echo_node.mjs`, "PORT"],
    readyLine: /^listening/,
  },
  // Its own flag for the net unstable API: it runs without netchat's deno.json.
  {
    id: "deno-floor",
    command: [
      DENO,
      "run",
      "--allow-net",
      "--unstable-net",
      `${BENCH_DIR}udp_echo_deno_floor.ts`,
      "PORT",
    ],
    readyLine: /^listening/,
  },
  {
    id: "netchat",
    command: [
      DENO,
      "run",
      "--allow-net",
      `${ROOT}udp_server.ts`,
      "--port",
      "PORT",
      "--mode",
      "echo",
    ],
    needs: `${ROOT}udp_server.ts`,
    readyLine: /listening on /,
  },
];
const CHAT_C: ServerSpec = {
  id: "c",
  command: [`${BUILD_DIR}chat_epoll`, "PORT"],
  readyLine: /^listening/,
};
const CHAT_NODE: ServerSpec = {
  id: "node",
  command: ["node", `${BENCH_DIR}chat_node.mjs`, "PORT"],
  readyLine: /^listening/,
};
const CHAT_NETCHAT: ServerSpec = {
  id: "netchat",
  // Fan-out measures how fast the room relays one sender's flood, which is what
  // --max-rate exists to pace (1000 lines a second by default): measured without it.
  command: [
    ...[DENO, "run", "--allow-net", `${ROOT}server.ts`],
    ...["--port", "PORT", "--mode", "chat", "--max-rate", "0"],
  ],
  needs: `${ROOT}server.ts`,
  readyLine: /listening on /,
};
// The same room shared over Redis (redis_seam.ts): one instance, then two on one port
// (SO_REUSEPORT: the kernel spreads loadgen's 101 connections over both). Each row has
// a room of its own in the run's redis-server, so an idle row's instances read nothing.
const CHAT_REDIS_1: ServerSpec = {
  ...CHAT_NETCHAT,
  id: "netchat-redis-1",
  command: [...CHAT_NETCHAT.command, "--redis", "REDIS", "--room", "bench-1"],
  needs: `${ROOT}redis_seam.ts`,
};
const CHAT_REDIS_2: ServerSpec = {
  ...CHAT_NETCHAT,
  id: "netchat-redis-2",
  command: [...CHAT_NETCHAT.command, "--redis", "REDIS", "--room", "bench-2", "--reuse-port"],
  instances: 2,
  needs: `${ROOT}redis_seam.ts`,
};
// The run's own Redis, on loopback, persistence off (no RDB snapshots, no AOF).
const REDIS: ServerSpec = {
  id: "redis",
  command: [
    ...["redis-server", "--port", "PORT", "--bind", HOST],
    ...["--save", "", "--appendonly", "no"],
  ],
  readyLine: /Ready to accept connections/,
};
// ncat accepts 100 clients by default; fan-out needs 101 (100 receivers and the sender).
const CHAT_NCAT: ServerSpec = {
  id: "ncat",
  command: ["ncat", "-l", HOST, "PORT", "--chat", "--max-conns", "1000"],
};

const SCENARIOS: Scenario[] = [
  {
    id: "tcp-pingpong",
    title: "tcp-pingpong, 50 connections (echo)",
    unit: "msgs/s",
    loadArgs: ["-m", "tcp-pingpong", "-c", "50"],
    servers: ECHO_SERVERS,
    baseline: "node",
    floorTarget: 0.97,
  },
  {
    id: "tcp-pipeline",
    title: "tcp-pipeline, 10 connections x 32 in flight (echo)",
    unit: "msgs/s",
    loadArgs: ["-m", "tcp-pipeline", "-c", "10", "-P", "32"],
    servers: ECHO_SERVERS,
    baseline: "node",
    floorTarget: 0.9,
  },
  {
    id: "tcp-connect",
    title: "tcp-connect: connect, one line, close; 16 at once (echo)",
    unit: "conns/s",
    loadArgs: ["-m", "tcp-connect", "-c", "16", "-A", "8"],
    servers: ECHO_SERVERS,
    baseline: "node",
    target: 1.3,
  },
  {
    id: "tls-pingpong",
    title: "tls-pingpong, 50 connections (echo over TLS 1.3)",
    unit: "msgs/s",
    loadArgs: ["-m", "tcp-pingpong", "-c", "50", "-L"],
    servers: TLS_ECHO_SERVERS,
    baseline: "node",
    // What it measured when it landed (0.79x, a busy machine): it must not drop below.
    target: 0.75,
  },
  {
    id: "udp-pingpong",
    title: "udp-pingpong, 16 sockets (echo)",
    unit: "pkts/s",
    loadArgs: ["-m", "udp-pingpong", "-c", "16"],
    servers: UDP_SERVERS,
    baseline: "node",
    target: 1.0,
  },
  {
    id: "chat-fanout",
    title: "chat-fanout, 1 sender to 100 receivers (chat)",
    unit: "delivered/s",
    loadArgs: ["-m", "chat-fanout", "-K", "100"],
    servers: [CHAT_C, CHAT_NODE, CHAT_NCAT, CHAT_FLOOR, CHAT_NETCHAT],
    baseline: "ncat",
    target: 1.0,
    floorTarget: 0.95,
    p99NoWorse: true,
  },
  {
    id: "chat-redis",
    title: "chat-redis: chat-fanout through Redis, 1 and 2 instances, vs the in-process room",
    unit: "delivered/s",
    loadArgs: ["-m", "chat-fanout", "-K", "100"],
    servers: [CHAT_NETCHAT, CHAT_REDIS_1, CHAT_REDIS_2],
    baseline: "netchat",
  },
  {
    // The hop alone: one line in flight (-P 1), so no line waits behind others.
    id: "chat-redis-1",
    title: "chat-redis-1: the same with one line in flight (latency, not throughput)",
    unit: "delivered/s",
    loadArgs: ["-m", "chat-fanout", "-K", "100", "-P", "1"],
    servers: [CHAT_NETCHAT, CHAT_REDIS_1, CHAT_REDIS_2],
    baseline: "netchat",
    maxRepeats: 1,
  },
];
const IDLE_SERVERS: ServerSpec[] = [
  CHAT_C,
  CHAT_NODE,
  // The Deno floor: a welcome and one pending read per connection, nothing else.
  {
    id: "deno-floor",
    command: [DENO, "run", "--allow-net", `${BENCH_DIR}idle_floor.ts`, "PORT"],
    readyLine: /listening on /,
  },
  // netchat takes 1000 clients by default; the idle test needs room for 5000.
  {
    ...CHAT_NETCHAT,
    command: [...CHAT_NETCHAT.command, "--max-clients", String(IDLE_CONNECTIONS + 1000)],
  },
];
const ALL_PARTS = ["micro", ...SCENARIOS.map((s) => s.id), "idle"];

const SERVER_NAMES: Record<ServerId, string> = {
  netchat: "netchat (Deno)",
  node: "Node",
  ncat: "ncat",
  c: "C epoll (ref)",
  "deno-floor": "Deno floor",
  "netchat-redis-1": "netchat Redis x1",
  "netchat-redis-2": "netchat Redis x2",
  redis: "redis-server",
};

const decoder = new TextDecoder();
const started = Date.now();

// ---------- processes ----------

/** Every child still running, so that an error or Ctrl-C can end them all. */
const children = new Set<Deno.ChildProcess>();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `child` to exit, sending SIGTERM and then SIGKILL if it does not. */
async function stop(child: Deno.ChildProcess): Promise<void> {
  if (!children.has(child)) return;
  const exited = child.status.then(() => true);
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  if (!await Promise.race([exited, sleep(2000).then(() => false)])) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }
  children.delete(child);
}

/** Stops every process of `server`, all at once. */
async function stopServer(server: RunningServer): Promise<void> {
  await Promise.all(server.children.map(stop));
}

function stopAllNow(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

/**
 * Starts `command` pinned to `core` with a raised file limit. `exec` all the
 * way down, so the child's pid is the measured program's own pid.
 */
function spawnPinned(
  core: string,
  command: string[],
  options: { logPath?: string; stdout?: "piped" | "null" } = {},
): Deno.ChildProcess {
  const redirect = options.logPath ? '>"$0" 2>&1' : "";
  const script = `ulimit -n ${FILE_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ` +
    `exec taskset -c ${core} "$@" ${redirect}`;
  const child = new Deno.Command("bash", {
    args: ["-c", script, options.logPath ?? "bench", ...command],
    cwd: ROOT,
    stdin: "null",
    stdout: options.logPath ? "null" : (options.stdout ?? "piped"),
    stderr: options.logPath ? "null" : "inherit",
  }).spawn();
  children.add(child);
  child.status.then(() => children.delete(child));
  return child;
}

/** A free TCP port on 127.0.0.1 (also free for UDP in practice: the servers say if not). */
function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** A server's processes: one, or `spec.instances` sharing the port. */
interface RunningServer {
  spec: ServerSpec;
  port: number;
  /** The first process's pid, child and log; `pids`, `children` and `logPaths` hold them all. */
  pid: number;
  child: Deno.ChildProcess;
  logPath: string;
  pids: number[];
  children: Deno.ChildProcess[];
  logPaths: string[];
  /** Set when any of its processes has exited. */
  exited: boolean;
}

/**
 * Starts a server on a fresh port (all its instances on that one port) and
 * waits until every instance is ready to serve. `redisUrl` replaces `REDIS`
 * in its command.
 */
async function startServer(
  spec: ServerSpec,
  tag: string,
  redisUrl = "",
): Promise<RunningServer> {
  const port = freePort();
  const count = spec.instances ?? 1;
  const logPaths = Array.from(
    { length: count },
    (_, i) => `${LOG_DIR}${tag}-${spec.id}${i > 0 ? `-${i + 1}` : ""}.log`,
  );
  const command = spec.command.map((arg) =>
    arg === "PORT" ? String(port) : arg === "REDIS" ? redisUrl : arg
  );
  const children = logPaths.map((logPath) => spawnPinned(SERVER_CORE, command, { logPath }));
  const server: RunningServer = {
    spec,
    port,
    pid: children[0].pid,
    child: children[0],
    logPath: logPaths[0],
    pids: children.map((child) => child.pid),
    children,
    logPaths,
    exited: false,
  };
  for (const child of children) child.status.then(() => server.exited = true);
  const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
  const logs = () => logPaths.map((path) => tail(readText(path))).join(" || ");
  while (true) {
    if (server.exited) {
      await stopServer(server);
      throw new Error(`${spec.id} exited before it was ready: ${logs()}`);
    }
    // Without a ready line, look for the listening socket rather than connect:
    // ncat quits when a client is gone before it asks for the peer's address.
    const ready = spec.readyLine
      ? logPaths.every((path) =>
        readText(path).split("\n").some((line) => spec.readyLine!.test(line))
      )
      : isListening(port);
    if (ready) break;
    if (Date.now() > deadline) {
      await stopServer(server);
      throw new Error(`${spec.id} not ready after ${SERVER_READY_TIMEOUT_MS} ms: ${logs()}`);
    }
    await sleep(25);
  }
  return server;
}

/** Is a TCP socket listening on 127.0.0.1:`port`? (state 0A in /proc/net/tcp) */
function isListening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readText("/proc/net/tcp").split("\n")
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === local && fields[3] === "0A";
    });
}

/** The server's own word on refused or failed requests, from its log: a count and the first. */
function serverComplaints(server: RunningServer | undefined): string {
  if (!server) return "";
  const lines = server.logPaths.flatMap((path) => readText(path).split("\n"))
    .filter((line) => /invalid|refused|error|full|too long|dropped/i.test(line));
  return lines.length ? `server log: ${lines.length} lines like "${lines[0].slice(0, 80)}"` : "";
}

function tail(text: string): string {
  const lines = text.trim().split("\n");
  return lines.slice(-3).join(" | ") || "(no output)";
}

/**
 * Runs the load generator on its core against the server's processes `pids`
 * (their CPU is summed), calling `onLine` for every line it prints, and
 * returns its `RESULT` line's fields, plus `other_cpu_pct`: what every other
 * process on the machine used meanwhile.
 */
async function runLoad(
  args: string[],
  pids: number[],
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<LoadResult> {
  const before = otherTicks(pids);
  const startedAt = performance.now();
  const child = spawnPinned(LOAD_CORE, [`${BUILD_DIR}loadgen`, ...args, "-S", pids.join(",")]);
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  let result: LoadResult | undefined;
  let pending = "";
  const output: string[] = [];
  try {
    for await (const chunk of child.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      let newline;
      while ((newline = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        output.push(line);
        if (line.startsWith("RESULT ")) result = parseResult(line);
        onLine?.(line);
      }
    }
    await child.status;
  } finally {
    clearTimeout(timer);
  }
  if (!result) throw new Error(`loadgen printed no RESULT line: ${output.slice(-3).join(" | ")}`);
  if (result.error) throw new Error(`loadgen failed: ${result.error}`);
  const seconds = (performance.now() - startedAt) / 1000;
  const ticks = otherTicks([...pids, child.pid]) - before;
  // Processes that end during the run take their ticks with them: never below 0.
  result.other_cpu_pct = Math.max(0, 100 * ticks / CLOCK_TICKS / seconds).toFixed(0);
  return result;
}

const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

/**
 * CPU ticks used so far by every process except this script and `exclude`,
 * counting reaped children in their parents. Others at work on the machine
 * (a test run, a build) take cores from the server or the load generator: the
 * figure says how much, so a disturbed run can be seen and repeated.
 */
function otherTicks(exclude: number[]): number {
  let total = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid || exclude.includes(pid)) continue;
    const stat = readText(`/proc/${pid}/stat`);
    // Fields after "(comm) ": state is 0, so utime..cstime are 11..14.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    for (let i = 11; i <= 14; i++) total += Number(fields[i]) || 0;
  }
  return total;
}

function parseResult(line: string): LoadResult {
  const fields: LoadResult = {};
  for (const pair of line.slice("RESULT ".length).trim().split(/\s+/)) {
    const equals = pair.indexOf("=");
    if (equals > 0) fields[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return fields;
}

function num(result: LoadResult | undefined, key: string): number {
  return result && key in result ? Number(result[key]) : NaN;
}

function overBudget(): boolean {
  return Date.now() - started > TIME_BUDGET_MS;
}

// ---------- building ----------

/** Compiles the C programs with `cc -O2` when the binary is missing or older than its source. */
async function build(): Promise<void> {
  Deno.mkdirSync(LOG_DIR, { recursive: true });
  for (const name of ["loadgen", "echo_epoll", "udp_echo", "chat_epoll"]) {
    const source = `${BENCH_DIR}${name}.c`;
    const binary = `${BUILD_DIR}${name}`;
    const sourceTime = Deno.statSync(source).mtime?.getTime() ?? 0;
    let binaryTime = -1;
    try {
      binaryTime = Deno.statSync(binary).mtime?.getTime() ?? -1;
    } catch { /* missing */ }
    if (binaryTime >= sourceTime) continue;
    const args = [
      "-O2",
      "-o",
      binary,
      source,
      ...(name === "loadgen" ? ["-lm", "-lssl", "-lcrypto"] : []),
    ];
    console.log(`cc ${args.join(" ")}`);
    const { code, stderr } = await new Deno.Command("cc", { args, stderr: "piped" }).output();
    if (code !== 0) throw new Error(`cc failed for ${name}.c: ${decoder.decode(stderr)}`);
  }
  try {
    Deno.statSync(CERT);
  } catch {
    const { code, stderr } = await new Deno.Command(DENO, {
      args: ["task", "--config", `${ROOT}deno.json`, "--cwd", BUILD_DIR, "cert"],
      stderr: "piped",
    }).output();
    if (code !== 0) throw new Error(`deno task cert failed: ${decoder.decode(stderr)}`);
  }
}

// ---------- scenarios ----------

async function runScenario(
  scenario: Scenario,
  duration: number,
  repeats: number,
): Promise<ScenarioResult> {
  const rows = new Map<ServerId, Row>();
  const running: RunningServer[] = [];
  // The Redis rows share one redis-server of this run's own; their CPU counts its too.
  let redis: RunningServer | undefined;
  let redisFailure = "";
  const usesRedis = (spec: ServerSpec) => spec.command.includes("REDIS");
  const serverPids = (server: RunningServer) => [
    ...server.pids,
    ...(redis && usesRedis(server.spec) ? [redis.pid] : []),
  ];
  console.log(`\n== ${scenario.title}`);
  try {
    if (scenario.servers.some(usesRedis)) {
      try {
        redis = await startServer(REDIS, scenario.id);
      } catch (error) {
        redisFailure = `redis-server: ${message(error)}`;
      }
    }
    for (const spec of scenario.servers) {
      rows.set(spec.id, { server: spec.id, status: "ok", runs: [] });
      if (usesRedis(spec) && !redis) {
        rows.set(spec.id, { server: spec.id, status: "failed", note: redisFailure, runs: [] });
        continue;
      }
      if (spec.needs && !exists(spec.needs)) {
        rows.set(spec.id, {
          server: spec.id,
          status: "missing",
          note: `${spec.needs.slice(ROOT.length)} not found`,
          runs: [],
        });
        continue;
      }
      try {
        running.push(
          await startServer(spec, scenario.id, redis ? `redis://${HOST}:${redis.port}` : ""),
        );
      } catch (error) {
        rows.set(spec.id, { server: spec.id, status: "failed", note: message(error), runs: [] });
      }
    }
    for (let repeat = 0; repeat < Math.min(repeats, scenario.maxRepeats ?? repeats); repeat++) {
      // Alternate the order between repeats, so no server always goes first.
      const order = repeat % 2 === 0 ? running : [...running].reverse();
      for (const server of order) {
        const row = rows.get(server.spec.id)!;
        if (overBudget()) {
          if (row.runs.length === 0) row.status = "skipped";
          row.note = "time budget";
          continue;
        }
        if (server.exited) {
          // ncat --chat can quit as a run's clients leave: start it again for the next run.
          const why = tail(readText(server.logPath));
          await stopServer(server);
          try {
            Object.assign(
              server,
              await startServer(
                server.spec,
                scenario.id,
                redis ? `redis://${HOST}:${redis.port}` : "",
              ),
            );
          } catch (error) {
            row.note = message(error);
            continue;
          }
          row.restarts = (row.restarts ?? 0) + 1;
          row.exitLog = why;
          console.log(`  ${SERVER_NAMES[server.spec.id]} had exited (${why}); restarted`);
        }
        const args = [
          ...scenario.loadArgs,
          ...["-p", String(server.port), "-s", String(MESSAGE_BYTES)],
          ...["-d", String(duration), "-w", String(WARMUP_S)],
        ];
        // A run that other processes disturbed is done once more, while time allows.
        for (let attempt = 1; attempt <= 2; attempt++) {
          const label = `${SERVER_NAMES[server.spec.id].padEnd(15)} run ${repeat + 1}` +
            (attempt > 1 ? " again" : "");
          try {
            const result = await runLoad(
              args,
              serverPids(server),
              (duration + WARMUP_S + 30) * 1000,
            );
            row.runs.push(result);
            console.log(`  ${label}: ${brief(result)}`);
            const late = Date.now() - started > RETRY_BUDGET_MS;
            if (num(result, "other_cpu_pct") < BUSY_MACHINE_CPU_PCT || late) break;
          } catch (error) {
            row.note = message(error);
            console.log(`  ${label}: ${row.note}`);
            break;
          }
        }
      }
    }
  } finally {
    await Promise.all(running.map(stopServer));
    // Last, so that the instances' seams can flush and say goodbye to it.
    if (redis) await stopServer(redis);
  }
  for (const row of rows.values()) {
    if (row.status !== "ok") continue;
    if (row.runs.length === 0) {
      row.status = "failed";
      continue;
    }
    // Best of the repeats: the run with the highest rate, with its own latencies and CPU.
    row.best = row.runs.reduce((a, b) => num(b, "rate") > num(a, "rate") ? b : a);
    const problems = ["errors", "bad_bytes", "stalls", "lost"]
      .filter((key) => num(row.best, key) > 0)
      .map((key) => `${key}=${row.best![key]}`);
    const complaints = serverComplaints(running.find((server) => server.spec.id === row.server));
    if (complaints) problems.push(complaints);
    if (row.restarts) {
      problems.push(`exited after a run ${row.restarts}x, restarted: "${row.exitLog}"`);
    }
    if (problems.length) row.note = problems.join("; ");
  }
  const result: ScenarioResult = {
    id: scenario.id,
    title: scenario.title,
    unit: scenario.unit,
    loadArgs: scenario.loadArgs,
    baseline: scenario.baseline,
    target: scenario.target,
    floorTarget: scenario.floorTarget,
    rows: [...rows.values()],
  };
  const netchat = rows.get("netchat")?.best;
  const baseline = rows.get(scenario.baseline)?.best;
  // The Redis rows: what the hop through Redis adds to the in-process room's latency.
  for (const row of rows.values()) {
    if (!row.best || !baseline || !row.server.startsWith("netchat-redis")) continue;
    row.addedLatencyUs = {
      p50: num(row.best, "p50_us") - num(baseline, "p50_us"),
      p99: num(row.best, "p99_us") - num(baseline, "p99_us"),
    };
  }
  const floor = rows.get("deno-floor")?.best;
  const hasTarget = scenario.target !== undefined || scenario.floorTarget !== undefined;
  if (netchat && baseline && hasTarget) {
    const ratio = num(netchat, "rate") / num(baseline, "rate");
    const floorRatio = floor ? num(netchat, "rate") / num(floor, "rate") : undefined;
    const p99Ratio = num(netchat, "p99_us") / num(baseline, "p99_us");
    result.netchat = {
      ratio,
      met: ratio >= (scenario.target ?? 0) &&
        (scenario.floorTarget === undefined ||
          (floorRatio !== undefined && floorRatio >= scenario.floorTarget)) &&
        (!scenario.p99NoWorse || p99Ratio <= 1),
      ...(floorRatio !== undefined ? { floorRatio } : {}),
      ...(scenario.p99NoWorse ? { p99Ratio } : {}),
    };
  }
  return result;
}

/** RSS of `pid` in KB, from /proc/PID/status. */
function rssKb(pid: number): number {
  const match = readText(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
  return match ? Number(match[1]) : NaN;
}

function openFiles(pid: number): number {
  let count = 0;
  try {
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) count++;
  } catch { /* gone */ }
  return count;
}

/**
 * Opens 5,000 idle connections to a chat server and reads how much its RSS
 * grew. The connections send nothing (`-e 0`: a chat server does not echo), so
 * the server has really accepted them only once its open files count them.
 * (loadgen's own `alive` count is no use here: it counts sockets with nothing
 * to read, and a server that greets its clients has always sent something.)
 */
async function runIdle(spec: ServerSpec): Promise<IdleRow> {
  if (spec.needs && !exists(spec.needs)) {
    return {
      server: spec.id,
      status: "missing",
      note: `${spec.needs.slice(ROOT.length)} not found`,
    };
  }
  if (overBudget()) return { server: spec.id, status: "skipped", note: "time budget" };
  let server: RunningServer | undefined;
  try {
    server = await startServer(spec, "idle");
    await sleep(300);
    const { pid } = server;
    const rssBeforeKb = rssKb(pid);
    const filesBefore = openFiles(pid);
    let rssAfterKb = NaN;
    let held = 0;
    let openSeconds = NaN;
    let measuring: Promise<void> | undefined;
    // Measure once: when loadgen says all are open, or when opening takes too long.
    const measure = (want: number) => {
      measuring ??= (async () => {
        // Wait until the server holds (nearly) every connection, then let it settle.
        const deadline = Date.now() + (IDLE_HOLD_S - 1.5) * 1000;
        while (openFiles(pid) - filesBefore < want * 0.99 && Date.now() < deadline) await sleep(50);
        await sleep(500);
        rssAfterKb = rssKb(pid);
        held = openFiles(pid) - filesBefore;
      })();
    };
    const slow = setTimeout(() => measure(IDLE_CONNECTIONS), IDLE_OPEN_LIMIT_MS);
    const args = [
      ...["-m", "tcp-idle", "-c", String(IDLE_CONNECTIONS), "-e", "0"],
      ...["-p", String(server.port), "-d", String(IDLE_HOLD_S)],
    ];
    let failure = "";
    try {
      await runLoad(args, [pid], IDLE_OPEN_LIMIT_MS + IDLE_HOLD_S * 1000, (line) => {
        if (!line.startsWith("READY ")) return;
        const ready = parseResult(line.replace("READY", "RESULT"));
        openSeconds = num(ready, "open_s");
        measure(num(ready, "ok"));
      });
    } catch (error) {
      failure = message(error);
    } finally {
      clearTimeout(slow);
    }
    await measuring;
    if (!measuring) throw new Error(failure);
    const kbPerConnection = (rssAfterKb - rssBeforeKb) / held;
    const notes = [
      held < IDLE_CONNECTIONS * 0.99 ? `server held only ${held} of ${IDLE_CONNECTIONS}` : "",
      Number.isNaN(openSeconds)
        ? `loadgen had not opened them all after ${IDLE_OPEN_LIMIT_MS / 1000} s`
        : `opened in ${openSeconds} s`,
    ].filter(Boolean);
    console.log(
      `  ${SERVER_NAMES[spec.id].padEnd(15)} ${held} connections held: ` +
        `RSS ${rssBeforeKb} -> ${rssAfterKb} KB, ${kbPerConnection.toFixed(2)} KB each; ` +
        notes.join("; "),
    );
    return {
      server: spec.id,
      status: "ok",
      held,
      openSeconds,
      rssBeforeKb,
      rssAfterKb,
      kbPerConnection,
      note: notes.join("; "),
    };
  } catch (error) {
    return { server: spec.id, status: "failed", note: message(error) };
  } finally {
    if (server) await stopServer(server);
  }
}

async function runMicro(): Promise<MicroRow[]> {
  console.log("\n== deno bench bench/line_buffer_bench.ts");
  const { code, stdout, stderr } = await new Deno.Command(DENO, {
    args: ["bench", "--json", `${BENCH_DIR}line_buffer_bench.ts`],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`deno bench failed: ${tail(decoder.decode(stderr))}`);
  const report = JSON.parse(decoder.decode(stdout)) as {
    benches: { name: string; results: { ok?: { avg: number } }[] }[];
  };
  const rows: MicroRow[] = [];
  for (const bench of report.benches) {
    const avgNs = bench.results[0]?.ok?.avg ?? NaN;
    const bytes = BYTES_PER_ITERATION[bench.name] ?? NaN;
    rows.push({ name: bench.name, bytes, avgNs, mbPerS: bytes / avgNs * 1000 });
  }
  console.log(
    markdownTable(
      ["benchmark", "bytes/iter", "time/iter", "MB/s"],
      rows.map((row) => [
        row.name,
        String(row.bytes),
        `${(row.avgNs / 1000).toFixed(1)} µs`,
        row.mbPerS.toFixed(0),
      ]),
    ),
  );
  return rows;
}

// ---------- reporting ----------

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function brief(result: LoadResult): string {
  return `rate=${result.rate} p50=${result.p50_us}µs p99=${result.p99_us}µs ` +
    `srv_cpu=${result.srv_cpu_pct}% lg_cpu=${result.lg_cpu_pct}% others=${result.other_cpu_pct}%` +
    (num(result, "errors") > 0 ? ` errors=${result.errors}` : "");
}

/** 1234567 -> "1.23M", 45678 -> "45.7k". */
function formatRate(rate: number): string {
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(2)}M`;
  if (rate >= 1e3) return `${(rate / 1e3).toFixed(1)}k`;
  return rate.toFixed(0);
}

function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, i) =>
    Math.max(cell.length, ...rows.map((row) => row[i].length))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function summaryTable(scenarios: ScenarioResult[], idle: IdleRow[]): string {
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    const baseline = scenario.rows.find((row) => row.server === scenario.baseline)?.best;
    const floor = scenario.rows.find((row) => row.server === "deno-floor")?.best;
    for (const row of scenario.rows) {
      const best = row.best;
      // netchat's rate over the Deno floor's, where the scenario has one (issue 15).
      const overFloor = row.server === "netchat" && best && floor
        ? `${(num(best, "rate") / num(floor, "rate")).toFixed(2)}x`
        : "";
      const loadBound = num(best, "lg_cpu_pct") >= LOAD_BOUND_CPU_PCT;
      let ratio = "";
      if (best && baseline) ratio = `${(num(best, "rate") / num(baseline, "rate")).toFixed(2)}x`;
      if (row.server === scenario.baseline && best) ratio = "1.00x (base)";
      let verdict = "";
      if (row.server === "netchat" && scenario.netchat) {
        const p99 = scenario.netchat.p99Ratio !== undefined
          ? `, p99 ${scenario.netchat.p99Ratio.toFixed(2)}x`
          : "";
        verdict = `${scenario.netchat.met ? "met" : "MISSED"} (${targetText(scenario)}${p99})`;
      }
      const others = num(best, "other_cpu_pct");
      const added = row.addedLatencyUs;
      const signed = (us: number) => `${us >= 0 ? "+" : ""}${us}`;
      const notes = [
        added ? `Redis hop: p50 ${signed(added.p50)} µs, p99 ${signed(added.p99)} µs` : "",
        row.server === "netchat-redis-2" ? "2 instances, one port" : "",
        loadBound ? "LOAD-BOUND" : "",
        others >= BUSY_MACHINE_CPU_PCT ? `busy machine: others used ${others}% CPU` : "",
        row.status === "ok" ? "" : row.status,
        row.note ?? "",
        verdict,
      ].filter(Boolean).join("; ");
      rows.push([
        scenario.id,
        SERVER_NAMES[row.server],
        best ? `${formatRate(num(best, "rate"))} ${scenario.unit}` : "-",
        best ? String(best.p50_us) : "-",
        best ? String(best.p99_us) : "-",
        best ? String(best.srv_cpu_pct) : "-",
        best ? `${best.lg_cpu_pct}${loadBound ? " *" : ""}` : "-",
        ratio,
        overFloor,
        notes,
      ]);
    }
  }
  const idleFloor = idle.find((row) => row.server === "deno-floor");
  for (const row of idle) {
    const ok = row.status === "ok";
    const overFloor = idleOverFloor(idle);
    const verdict = row.server === "netchat" && overFloor !== undefined
      ? `${
        overFloor <= IDLE_FLOOR_TARGET ? "met" : "MISSED"
      } (target <= ${IDLE_FLOOR_TARGET}x floor)`
      : "";
    rows.push([
      `idle ${IDLE_CONNECTIONS}`,
      SERVER_NAMES[row.server],
      ok ? `${row.kbPerConnection!.toFixed(2)} KB/conn` : "-",
      "-",
      "-",
      "-",
      "-",
      "",
      row.server === "netchat" && ok && idleFloor?.status === "ok"
        ? `${(row.kbPerConnection! / idleFloor.kbPerConnection!).toFixed(2)}x`
        : "",
      [ok ? `RSS ${row.rssBeforeKb} -> ${row.rssAfterKb} KB` : row.status, row.note ?? "", verdict]
        .filter(Boolean).join("; "),
    ]);
  }
  return markdownTable(
    [
      ...["scenario", "server", "rate", "p50 µs", "p99 µs", "srv CPU %", "lg CPU %", "ratio"],
      ...["/ floor", "notes"],
    ],
    rows,
  );
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A scenario's targets in words, e.g. "target >= 1x ncat and >= 0.95x floor, p99 <= 1x". */
function targetText(scenario: ScenarioResult & { p99NoWorse?: boolean }): string {
  const parts: string[] = [];
  if (scenario.target !== undefined) {
    parts.push(`>= ${scenario.target}x ${SERVER_NAMES[scenario.baseline]}`);
  }
  if (scenario.floorTarget !== undefined) parts.push(`>= ${scenario.floorTarget}x floor`);
  const p99 = scenario.netchat?.p99Ratio !== undefined ? ", p99 <= 1x" : "";
  return `target ${parts.join(" and ")}${p99}`;
}

/** netchat's idle KB per connection over the Deno idle floor's, when both were measured. */
function idleOverFloor(idle: IdleRow[]): number | undefined {
  const netchat = idle.find((row) => row.server === "netchat")?.kbPerConnection;
  const floor = idle.find((row) => row.server === "deno-floor")?.kbPerConnection;
  return netchat !== undefined && floor ? netchat / floor : undefined;
}

/**
 * A horizontal bar per target: netchat's ratio to the baseline or to the Deno
 * floor, with the target as a line across the bar. Idle memory is drawn as
 * the floor's KB per connection over netchat's, so for every bar "past the
 * line" means the target was met.
 * The Redis rows have no target: a grey bar each, their ratio to the
 * in-process room.
 */
function ratioChart(scenarios: ScenarioResult[], idle: IdleRow[]): string {
  const bars: { label: string; value?: number; target?: number; text: string; met?: boolean }[] =
    [];
  for (const scenario of scenarios) {
    if (scenario.target === undefined && scenario.floorTarget === undefined) {
      const baseline = scenario.rows.find((row) => row.server === scenario.baseline)?.best;
      for (const row of scenario.rows) {
        if (row.server === scenario.baseline) continue;
        const ratio = row.best && baseline
          ? num(row.best, "rate") / num(baseline, "rate")
          : undefined;
        bars.push({
          label: `${SERVER_NAMES[row.server]} vs in-process`,
          value: ratio,
          text: ratio !== undefined && row.addedLatencyUs
            ? `${ratio.toFixed(2)}x (p50 ${
              row.addedLatencyUs.p50 >= 0 ? "+" : ""
            }${row.addedLatencyUs.p50} µs)`
            : row.status,
        });
      }
      continue;
    }
    const netchat = scenario.netchat;
    const missing = scenario.rows.find((row) => row.server === "netchat")?.status ?? "missing";
    const p99 = netchat?.p99Ratio !== undefined
      ? `; p99 ${netchat.p99Ratio.toFixed(2)}x of ${SERVER_NAMES[scenario.baseline]}`
      : "";
    if (scenario.target !== undefined) {
      const met = netchat && netchat.ratio >= scenario.target &&
        (netchat.p99Ratio === undefined || netchat.p99Ratio <= 1);
      bars.push({
        label: `${scenario.id} vs ${SERVER_NAMES[scenario.baseline]}`,
        value: netchat?.ratio,
        target: scenario.target,
        met,
        text: netchat ? `${netchat.ratio.toFixed(2)}x (target ${scenario.target}x${p99})` : missing,
      });
    }
    if (scenario.floorTarget !== undefined) {
      const ratio = netchat?.floorRatio;
      bars.push({
        label: `${scenario.id} vs Deno floor`,
        value: ratio,
        target: scenario.floorTarget,
        met: ratio !== undefined ? ratio >= scenario.floorTarget : undefined,
        text: ratio !== undefined
          ? `${ratio.toFixed(2)}x (target ${scenario.floorTarget}x)`
          : netchat
          ? "no floor row"
          : missing,
      });
    }
  }
  const idleRow = idle.find((row) => row.server === "netchat");
  if (idleRow) {
    const kb = idleRow.kbPerConnection;
    const overFloor = idleOverFloor(idle);
    bars.push({
      label: `idle ${IDLE_CONNECTIONS}: floor KB / KB per conn`,
      value: overFloor !== undefined ? 1 / overFloor : undefined,
      target: 1 / IDLE_FLOOR_TARGET,
      met: overFloor !== undefined ? overFloor <= IDLE_FLOOR_TARGET : undefined,
      text: kb !== undefined && overFloor !== undefined
        ? `${kb.toFixed(2)} KB per connection, ${
          overFloor.toFixed(2)
        }x the floor (target <= ${IDLE_FLOOR_TARGET}x)`
        : idleRow.status,
    });
  }
  const left = 270, barWidth = 380, rowHeight = 34, top = 46;
  const maxValue = Math.max(2, ...bars.map((bar) => Math.min(bar.value ?? 0, 4)));
  const x = (value: number) => left + Math.min(value, maxValue) / maxValue * barWidth;
  const height = top + bars.length * rowHeight + 36;
  const width = left + barWidth + 250;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">netchat vs its peer and the Deno floor, same run ` +
    `(ratio; black line = target)</text>`,
  ];
  // Grid and axis first, so the bars are drawn over them.
  const axisY = top + bars.length * rowHeight + 4;
  parts.push(
    `<line x1="${left}" y1="${axisY}" x2="${left + barWidth}" y2="${axisY}" stroke="#888"/>`,
  );
  for (let tick = 0; tick <= maxValue; tick += 0.5) {
    parts.push(
      `<line x1="${x(tick).toFixed(1)}" y1="${top - 4}" x2="${x(tick).toFixed(1)}" y2="${axisY}" ` +
        `stroke="#ddd"/>`,
    );
    parts.push(
      `<text x="${x(tick).toFixed(1)}" y="${axisY + 16}" text-anchor="middle" fill="#555">` +
        `${tick}x</text>`,
    );
  }
  bars.forEach((bar, i) => {
    const y = top + i * rowHeight;
    parts.push(
      `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${escapeXml(bar.label)}</text>`,
    );
    if (bar.value !== undefined) {
      const color = bar.target === undefined ? "#757575" : bar.met ? "#2e7d32" : "#c62828";
      parts.push(
        `<rect x="${left}" y="${y + 4}" width="${(x(bar.value) - left).toFixed(1)}" ` +
          `height="${rowHeight - 12}" fill="${color}"/>`,
      );
    }
    if (bar.target !== undefined) {
      const tx = x(bar.target).toFixed(1);
      parts.push(
        `<line x1="${tx}" y1="${y}" x2="${tx}" y2="${
          y + rowHeight - 4
        }" stroke="black" stroke-width="2"/>`,
      );
    }
    const textX = Math.max(x(bar.value ?? 0), x(bar.target ?? 0)) + 8;
    parts.push(`<text x="${textX.toFixed(1)}" y="${y + 17}">${escapeXml(bar.text)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

async function versions(): Promise<Record<string, string>> {
  const ask = async (command: string, args: string[]) => {
    try {
      const { stdout, stderr } = await new Deno.Command(command, { args }).output();
      return (decoder.decode(stdout) + decoder.decode(stderr)).trim().split("\n")[0];
    } catch {
      return "not found";
    }
  };
  return {
    deno: Deno.version.deno,
    node: await ask("node", ["--version"]),
    ncat: await ask("ncat", ["--version"]),
    cc: await ask("cc", ["--version"]),
    cpu: readText("/proc/cpuinfo").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown",
    kernel: readText("/proc/sys/kernel/osrelease").trim(),
  };
}

// ---------- main ----------

const USAGE = `Usage: deno task bench [--duration SECS] [--repeats N] [--only LIST]

Runs netchat's servers and their peers on loopback (servers on core 0, the load
generator on core 1) and writes bench/results.json and bench/ratios.svg.

  --duration SECS  measured seconds per run, after ${WARMUP_S} s of warm-up (default ${DEFAULT_DURATION_S})
  --repeats N      runs per server and scenario, order alternating (default ${DEFAULT_REPEATS})
  --only LIST      comma-separated parts to run: ${ALL_PARTS.join(",")}
  -h, --help       this help`;

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        duration: { type: "string", default: String(DEFAULT_DURATION_S) },
        repeats: { type: "string", default: String(DEFAULT_REPEATS) },
        only: { type: "string", default: ALL_PARTS.join(",") },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    console.error(`bench/run.ts: ${message(error).split("\n")[0]} (see --help)`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const duration = Number(values.duration);
  const repeats = Number(values.repeats);
  const only = values.only.split(",").map((part) => part.trim()).filter(Boolean);
  const unknown = only.filter((part) => !ALL_PARTS.includes(part));
  if (
    !(duration >= 1 && duration <= 30) || !Number.isInteger(repeats) || repeats < 1 || repeats > 5
  ) {
    console.error("bench/run.ts: --duration must be 1-30 seconds and --repeats 1-5 (see --help)");
    return 2;
  }
  if (unknown.length) {
    console.error(
      `bench/run.ts: Cannot run "${unknown.join(",")}": parts are ${ALL_PARTS.join(",")}`,
    );
    return 2;
  }

  await build();
  // Others at work on this machine disturb every figure: say so up front.
  const ticksBefore = otherTicks([]);
  await sleep(1000);
  const busyPct = Math.max(0, Math.round(100 * (otherTicks([]) - ticksBefore) / CLOCK_TICKS));
  if (busyPct >= BUSY_MACHINE_CPU_PCT) {
    console.log(
      `Warning: other processes are using ${busyPct}% CPU (of 200%) before the start; ` +
        `disturbed runs are flagged "busy machine".`,
    );
  }
  const micro = only.includes("micro") ? await runMicro() : [];
  // Idle memory first: it is short, and the time budget only cuts the repeats of the rest.
  const idle: IdleRow[] = [];
  if (only.includes("idle")) {
    console.log(`\n== ${IDLE_CONNECTIONS} idle chat connections: server RSS`);
    for (const spec of IDLE_SERVERS) idle.push(await runIdle(spec));
  }

  const scenarios: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) {
    if (only.includes(scenario.id)) scenarios.push(await runScenario(scenario, duration, repeats));
  }
  const table = summaryTable(scenarios, idle);
  const elapsedS = (Date.now() - started) / 1000;
  console.log(`\n${table}\n`);
  console.log(
    `Best of ${repeats} run(s) (chat-redis-1: 1) of ${duration} s (after ${WARMUP_S} s ` +
      `warm-up) per server; ` +
      `ratio = rate / baseline rate (Node; ncat --chat for chat-fanout; ` +
      `the in-process room for chat-redis*). ` +
      `* = load generator at >= ${LOAD_BOUND_CPU_PCT}% CPU: it, not the server, was the limit.`,
  );
  const report = {
    date: new Date().toISOString(),
    elapsedS,
    machine: await versions(),
    method: {
      serverCore: Number(SERVER_CORE),
      loadCore: Number(LOAD_CORE),
      messageBytes: MESSAGE_BYTES,
      durationS: duration,
      warmupS: WARMUP_S,
      repeats,
      pick: "best of the repeats (highest rate), with that run's latencies and CPU",
      loadBoundCpuPct: LOAD_BOUND_CPU_PCT,
      otherCpuPctAtStart: busyPct,
    },
    micro,
    scenarios,
    idle,
    table,
  };
  Deno.writeTextFileSync(RESULTS_PATH, JSON.stringify(report, null, 2) + "\n");
  if (scenarios.length || idle.length) {
    Deno.writeTextFileSync(CHART_PATH, ratioChart(scenarios, idle));
  }
  console.log(`Wrote bench/results.json and bench/ratios.svg in ${elapsedS.toFixed(0)} s`);
  return 0;
}

if (import.meta.main) {
  // Ctrl-C or a kill: end every server and load generator this script started.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      stopAllNow();
      Deno.exit(130);
    });
  }
  let code = 1;
  try {
    code = await main(Deno.args);
  } finally {
    stopAllNow();
  }
  Deno.exit(code);
}
