/**
 * The stress scenarios, written once and run at two scales: by
 * `tests/stress_test.ts` in CI (small enough for 2 cores in under a minute)
 * and by `tests/soak.ts` (`deno task soak`, ten times larger).
 *
 * Every scenario runs `server.ts` as its own process, so that its resident
 * memory (`/proc/PID/status`) and open descriptors (`/proc/PID/fd`) can be
 * read, a SIGTERM can be sent to it, and the test process's own sockets do
 * not count against the server's descriptor limit. Every loop is bounded in
 * count, and every wait has a deadline that fails the scenario when it passes.
 *
 * @module
 */
import assert from "node:assert/strict";
import { hasControlCharacters } from "../line_buffer.ts";
import { ROOT, runScript, type Script } from "./util.ts";

const encoder = new TextEncoder();

// ---- the server under test

/** `server.ts` running as a child process, its output drained and kept for matching. */
export class ServerProcess {
  readonly script: Script;
  readonly port: number;
  /** Output lines that are not relayed chat messages (those are only counted). */
  readonly logs: string[] = [];
  relayedLines = 0;
  #waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  #drained: Promise<void>;

  private constructor(script: Script, port: number) {
    this.script = script;
    this.port = port;
    // The server writes a log line per connection and per message; a pipe that
    // nobody drains would block it, so its output is read for as long as it runs.
    this.#drained = this.#drain();
  }

  /** Starts `server.ts --port 0 ...args` and waits for its `listening on` line. */
  static async start(args: string[] = [], permissions?: string[]): Promise<ServerProcess> {
    const port = args.includes("--port") ? [] : ["--port", "0"];
    const script = runScript("server.ts", [...port, ...args], { permissions, serverLog: true });
    const line = await withDeadline(
      script.stdout.until((line) => line.startsWith("listening on ")),
      10_000,
      "server.ts did not start listening",
    );
    return new ServerProcess(script, Number(/:(\d+) \(/.exec(line)![1]));
  }

  get pid(): number {
    return this.script.child.pid;
  }

  async #drain(): Promise<void> {
    for (let line = await this.script.stdout.line(); line !== null;) {
      if (line.startsWith("<")) {
        this.relayedLines++;
      } else {
        this.logs.push(line);
        this.#waiters = this.#waiters.filter((waiter) => {
          if (!waiter.match(line!)) return true;
          waiter.resolve(line!);
          return false;
        });
      }
      line = await this.script.stdout.line();
    }
  }

  /** The first output line, past or future, that matches; fails after `ms`. */
  waitLog(match: (line: string) => boolean, ms = 10_000): Promise<string> {
    const seen = this.logs.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return withDeadline(
      new Promise((resolve) => this.#waiters.push({ match, resolve })),
      ms,
      "expected server log line never came",
    );
  }

  /** Resident memory now and at its peak, in bytes (VmRSS and VmHWM). */
  async memory(): Promise<{ rss: number; peak: number }> {
    const status = await procText(["cat", `/proc/${this.pid}/status`]);
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
    return { rss: field("VmRSS"), peak: field("VmHWM") };
  }

  /** Open descriptors of the server process. */
  async descriptors(): Promise<number> {
    return (await procText(["ls", `/proc/${this.pid}/fd`])).split("\n").filter(Boolean).length;
  }

  /** Sends SIGTERM and returns the exit status and how long the exit took. */
  async terminate(): Promise<{ code: number; ms: number }> {
    const started = performance.now();
    this.script.child.kill("SIGTERM");
    const status = await withDeadline(this.script.child.status, 10_000, "server did not exit");
    return { code: status.code, ms: performance.now() - started };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.script.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.script.child.status;
    await this.script.stdin.close().catch(() => {});
    await this.#drained;
    await this.script.stderr.rest();
  }
}

// Deno lets only --allow-all read another process's /proc files, so they are
// read by `cat` and `ls`, which --allow-run permits.
async function procText(command: string[]): Promise<string> {
  const output = await new Deno.Command(command[0], { args: command.slice(1) }).output();
  if (!output.success) throw new Error(`${command.join(" ")} failed`);
  return new TextDecoder().decode(output.stdout);
}

// ---- clients

/**
 * A chat client on a raw connection that reads with `conn.read()` (never
 * `conn.readable`, which closes the whole connection at EOF) and tells the
 * server's FIN (`ended`) apart from a reset (`reset`).
 */
export class StressClient {
  readonly conn: Deno.TcpConn;
  ended = false;
  reset = false;
  /** Bytes received that are not "\t", "\n" or printable: must stay 0. */
  controlBytes = 0;
  invalidUtf8Lines = 0;
  #decoder = new TextDecoder();
  #partial = "";
  #pending: string[] = [];
  #buffer = new Uint8Array(64 * 1024);

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async connect(port: number): Promise<StressClient> {
    return new StressClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  get port(): number {
    return (this.conn.localAddr as Deno.NetAddr).port;
  }

  /**
   * Reads and hands every complete line to `onLine` until `onLine` returns
   * true, or end of stream. With `checkBytes`, every line is checked for
   * invalid UTF-8 and control characters before it is decoded.
   */
  async readLines(onLine: (line: string) => boolean | void, checkBytes = false): Promise<void> {
    // Lines left over from the read that satisfied the previous call come first.
    while (this.#pending.length > 0) {
      if (onLine(this.#pending.shift()!)) return;
    }
    while (!this.ended) {
      let n: number | null;
      try {
        n = await this.conn.read(this.#buffer);
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionReset) this.reset = true;
        // BadResource or Interrupted: the test closed this connection itself.
        else if (
          !(error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted)
        ) throw error;
        n = null;
      }
      if (n === null) {
        this.ended = true;
        return;
      }
      const chunk = this.#buffer.subarray(0, n);
      if (checkBytes) this.#checkBytes(chunk);
      const lines = (this.#partial + this.#decoder.decode(chunk, { stream: true })).split("\n");
      this.#partial = lines.pop()!;
      for (let i = 0; i < lines.length; i++) {
        if (checkBytes) this.#checkLine(lines[i]);
        if (onLine(lines[i])) {
          this.#pending = lines.slice(i + 1);
          return;
        }
      }
    }
  }

  // C0 controls and DEL are single bytes in UTF-8 and counted raw; C1
  // controls and broken UTF-8 (decoded as U+FFFD) are found in the decoded line.
  #checkBytes(chunk: Uint8Array): void {
    for (const byte of chunk) {
      if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a) || byte === 0x7f) this.controlBytes++;
    }
  }

  #checkLine(line: string): void {
    if (line.includes("\uFFFD")) this.invalidUtf8Lines++;
    if (hasControlCharacters(line)) this.controlBytes++;
  }

  /** The next line, or null at end of stream. */
  async line(): Promise<string | null> {
    let found: string | null = null;
    await this.readLines((line) => {
      found = line;
      return true;
    });
    return found;
  }

  async write(data: Uint8Array): Promise<void> {
    for (let written = 0; written < data.length;) {
      written += await this.conn.write(data.subarray(written));
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Connects a chat client and reads its welcome line. */
export async function join(port: number): Promise<StressClient> {
  const client = await StressClient.connect(port);
  const welcome = await client.line();
  assert.match(welcome ?? "(end of stream)", /^\* welcome, you are user\d+ /);
  return client;
}

/** Connects `count` clients, a few at a time, each one welcomed. */
export async function joinMany(port: number, count: number): Promise<StressClient[]> {
  const clients: StressClient[] = [];
  const parallel = 32;
  for (let i = 0; i < count; i += parallel) {
    const batch = Math.min(parallel, count - i);
    clients.push(...await Promise.all(Array.from({ length: batch }, () => join(port))));
  }
  return clients;
}

/** Asks for `/list` on `client` and returns the count line's number. */
export async function listCount(client: StressClient): Promise<number> {
  await client.write(encoder.encode("/list\n"));
  let count = -1;
  await client.readLines((line) => {
    const match = /^\* (\d+) clients?$/.exec(line);
    if (match) count = Number(match[1]);
    return match !== null;
  });
  return count;
}

// ---- waiting without sleeping

/** Resolves or rejects as `promise` does, or rejects with `what` after `ms`. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (deadline ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A seeded PRNG (mulberry32), so every run sends the same "random" bytes. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const MB = 1024 * 1024;

/** Where the Python helpers are. */
export const TESTS = `${ROOT}tests/`;

// ---- scenario: every message to every other client, exactly once, in order

export interface FanoutResult {
  clients: number;
  messages: number;
  /** Messages each receiver should get: (clients - 1) × messages. */
  expectedPerClient: number;
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  ms: number;
  peakRss: number;
}

/**
 * `clients` clients join, then each sends `messages` lines `m SENDER SEQ` at
 * full speed while reading everything. Each receiver keeps, per sender, which
 * sequence numbers it has seen and the highest one so far; lost, duplicated
 * and reordered messages are counted from what the receivers actually got.
 */
export async function fanout(
  server: ServerProcess,
  clients: number,
  messages: number,
  deadlineMs: number,
): Promise<FanoutResult> {
  const peers = await joinMany(server.port, clients);
  try {
    // Every client is in the room once it has its welcome, so every message
    // sent from here on goes to all the others.
    const expected = (clients - 1) * messages;
    const seen = peers.map(() => new Uint8Array(clients * messages));
    const highest = peers.map(() => new Int32Array(clients).fill(-1));
    const unique = new Uint32Array(clients);
    let duplicated = 0;
    let reordered = 0;
    const started = performance.now();
    const receiving = peers.map((peer, receiver) =>
      peer.readLines((line) => {
        if (!line.startsWith("<")) return false;
        const text = line.indexOf("> m ");
        const space = line.indexOf(" ", text + 4);
        const sender = Number(line.slice(text + 4, space));
        const sequence = Number(line.slice(space + 1));
        const slot = sender * messages + sequence;
        if (seen[receiver][slot]) duplicated++;
        else {
          seen[receiver][slot] = 1;
          unique[receiver]++;
        }
        if (sequence < highest[receiver][sender]) reordered++;
        else highest[receiver][sender] = sequence;
        return unique[receiver] === expected;
      })
    );
    const sending = peers.map(async (peer, sender) => {
      for (let sequence = 0; sequence < messages; sequence += 10) {
        let batch = "";
        for (let k = sequence; k < Math.min(messages, sequence + 10); k++) {
          batch += `m ${sender} ${k}\n`;
        }
        await peer.write(encoder.encode(batch));
      }
    });
    await withDeadline(
      Promise.all([...sending, ...receiving]),
      deadlineMs,
      "fan-out did not complete",
    ).catch((error) => console.error(error.message));
    const ms = performance.now() - started;
    let delivered = 0;
    for (const count of unique) delivered += count;
    return {
      clients,
      messages,
      expectedPerClient: expected,
      delivered,
      lost: clients * expected - delivered,
      duplicated,
      reordered,
      ms,
      peakRss: (await server.memory()).peak,
    };
  } finally {
    for (const peer of peers) peer.close();
  }
}

// ---- scenario: one client never reads

export interface SlowConsumerResult {
  senders: number;
  /** Messages all the senders sent, in both phases. */
  sent: number;
  /** Messages the senders failed to receive from one another: must be 0. */
  lost: number;
  /** Bytes relayed towards the slow client before it was dropped. */
  bytesTowardsSlow: number;
  dropLog: string;
  ms: number;
  peakRss: number;
}

const FILLER = "x".repeat(240);

/**
 * `senders` clients chat at full speed beside one that never reads. Phase 1
 * sends less than the queue bound towards it: everyone else's delivery must
 * complete while it is still in the room. Phase 2 goes on until the server
 * drops it, at most `maxRounds` messages per sender; then everything each
 * sender sent must have reached every other sender.
 */
export async function slowConsumer(
  server: ServerProcess,
  senders: number,
  maxRounds: number,
  maxQueueBytes: number,
  deadlineMs: number,
): Promise<SlowConsumerResult> {
  const slow = await join(server.port);
  const peers = await joinMany(server.port, senders);
  const started = performance.now();
  try {
    const slowId = /id=(\d+) /.exec(
      await server.waitLog((line) =>
        line.startsWith("connected ") && line.includes(`:${slow.port} `)
      ),
    )![1];
    let dropped = false;
    const dropLog = server.waitLog(
      (line) => line.startsWith("dropping ") && line.includes(`id=${slowId}:`),
      deadlineMs,
    ).then((line) => {
      dropped = true;
      return line;
    });
    const received = peers.map(() => new Uint32Array(senders));
    const sent = new Uint32Array(senders);
    const lineBytes = `<user000> m 00 00000 ${FILLER}\n`.length;

    // Sends `count` messages from every sender (or until the drop, in phase 2),
    // then waits until every sender has received all the others sent.
    const round = async (count: number, untilDropped: boolean): Promise<void> => {
      const sending = peers.map(async (peer, sender) => {
        for (let i = 0; i < count && !(untilDropped && dropped); i += 4) {
          let batch = "";
          for (let k = 0; k < 4; k++) batch += `m ${sender} ${sent[sender]++} ${FILLER}\n`;
          await peer.write(encoder.encode(batch));
        }
      });
      await Promise.all(sending);
      const total = sent.reduce((a, b) => a + b, 0);
      await Promise.all(peers.map((peer, receiver) => {
        const want = total - sent[receiver];
        const got = () => received[receiver].reduce((a, b) => a + b, 0);
        if (got() === want) return;
        return peer.readLines((line) => {
          const match = /^<[^>]+> m (\d+) (\d+) /.exec(line);
          if (match) {
            const sender = Number(match[1]);
            assert.equal(Number(match[2]), received[receiver][sender]++, "message out of order");
          }
          return got() === want;
        });
      }));
    };

    // Phase 1: less than the bound towards the slow client; nobody waits for it.
    const phase1 = Math.floor(maxQueueBytes / 2 / lineBytes / senders);
    await withDeadline(round(phase1, false), deadlineMs, "phase 1 did not complete");
    assert.ok(!dropped, "the slow client was dropped before its queue bound");
    assert.equal(await listCount(peers[0]), senders + 1, "the slow client is still in the room");
    // Phase 2: on at full speed until the server drops it, in steps small enough
    // that the senders, who read everything between steps, stay far from the
    // bound themselves: a step sends each of them a quarter of it.
    const step = Math.max(1, Math.floor(maxQueueBytes / 4 / lineBytes / senders));
    for (let rounds = 0; !dropped && rounds < maxRounds; rounds += step) {
      await withDeadline(round(step, true), deadlineMs, "phase 2 did not complete");
    }
    const total = sent.reduce((a, b) => a + b, 0);
    let lost = 0;
    for (let receiver = 0; receiver < senders; receiver++) {
      lost += total - sent[receiver] - received[receiver].reduce((a, b) => a + b, 0);
    }
    return {
      senders,
      sent: total,
      lost,
      bytesTowardsSlow: total * lineBytes,
      // The drop's log line may come just after the last round: wait for it.
      dropLog: await withDeadline(dropLog, deadlineMs, "the slow client was never dropped"),
      ms: performance.now() - started,
      peakRss: (await server.memory()).peak,
    };
  } finally {
    slow.close();
    for (const peer of peers) peer.close();
  }
}

// ---- scenario: hostile bytes beside a well-behaved pair

export interface HostileResult {
  connections: number;
  hostileBytes: number;
  /** Messages alice sent to bob during the flood, one at a time. */
  sent: number;
  lost: number;
  reordered: number;
  /** Bytes that reached bob which are control characters or broken UTF-8: must be 0. */
  controlBytes: number;
  invalidUtf8Lines: number;
  /** Renames bob saw to a name that impersonates alice or the server: must be 0. */
  impersonations: number;
  latencyMaxMs: number;
  latencyMedianMs: number;
  latencyP90Ms: number;
  ms: number;
  peakRss: number;
}

const BAD_UTF8 = [
  [0xc0, 0xaf], // overlong "/"
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xf5, 0x80, 0x80, 0x80], // above U+10FFFF
  [0x80], // a lone continuation byte
  [0xe4, 0xbd], // "你" cut short
  [0xff, 0xfe],
];
const ESCAPES = [
  "\x1b[2J",
  "\x1b]0;owned\x07",
  "\x1b[31m",
  "\u009b31m",
  "\u009d0;x\u009c",
  "\x1bP+q\x1b\\",
  "\x00",
  "\b\b\b",
  "\x7f",
];
// Names that must never be taken while alice holds "alice": case, width,
// invisible and direction-changing characters, and the server's own name.
const IMPERSONATIONS = [
  "ALICE",
  "Alice",
  "ａｌｉｃｅ",
  "alice\u200b",
  "al\u00adice",
  "\u202ealice",
  "alice\u0000",
  "alice\r",
  "server",
  "SERVER",
  "ｓｅｒｖｅｒ",
  "server\u200d",
  "server\u1160",
  "ALICE\u3164",
  "\u0430lice",
  "user1",
  "USER2",
];

/** The bytes hostile connection `index` sends: each kind of abuse in turn. */
function hostileBytes(index: number, random: () => number, scale: number): Uint8Array {
  const out: number[] = [];
  const push = (text: string) => out.push(...encoder.encode(text));
  switch (index % 8) {
    case 0: // uniform random bytes, NUL and newlines included
      for (let i = 0; i < 64 * 1024 * scale; i++) out.push(Math.floor(random() * 256));
      break;
    case 1: // invalid UTF-8 inside otherwise good lines
      for (let i = 0; i < 2000 * scale; i++) {
        push("ok ");
        out.push(...BAD_UTF8[i % BAD_UTF8.length]);
        push(i % 3 === 0 ? "\n" : " 你好\n");
      }
      break;
    case 2: // terminal escape sequences, C0 and C1 controls
      for (let i = 0; i < 2000 * scale; i++) {
        push(`${ESCAPES[i % ESCAPES.length]}esc ${i}${ESCAPES[(i * 7) % ESCAPES.length]}\n`);
      }
      break;
    case 3: // lone carriage returns, which would move bob's cursor
      for (let i = 0; i < 2000 * scale; i++) push(`fake\r<alice> a ${i}\r\r\n`);
      break;
    case 4: // 1 MB with no newline, then one
      return new Uint8Array(1024 * 1024 + 1).fill(0x41).fill(0x0a, 1024 * 1024);
    case 5: // a newline after every byte
      for (let i = 0; i < 4 * 1024 * scale; i++) out.push(0x61 + (i % 26), 0x0a);
      break;
    case 6: // names that impersonate alice or the server
      for (const name of IMPERSONATIONS) push(`/nick ${name}\n`);
      break;
    case 7: // Chinese text and random controls, no line limit respected
      for (let i = 0; i < 1000 * scale; i++) {
        push("这是一个测试".repeat(1 + Math.floor(random() * 30)));
        out.push(Math.floor(random() * 32));
        if (random() < 0.5) out.push(0x0a);
      }
      push("\n");
      break;
  }
  return new Uint8Array(out);
}

/**
 * `connections` clients send hostile bytes in random-sized writes while alice
 * sends bob one numbered message at a time (the next once bob has the last),
 * for as long as the flood lasts. Bob checks every byte he receives.
 */
export async function hostile(
  server: ServerProcess,
  connections: number,
  scale: number,
  deadlineMs: number,
): Promise<HostileResult> {
  const alice = await join(server.port);
  await alice.write(encoder.encode("/nick alice\n"));
  await alice.readLines((line) => line === "* user1 is now alice");
  const bob = await join(server.port);
  const attackers = await joinMany(server.port, connections);
  const random = prng(42);
  const started = performance.now();
  let hostileTotal = 0;
  let sent = 0;
  let received = 0;
  let reordered = 0;
  let impersonations = 0;
  const latencies: number[] = [];
  try {
    const draining = attackers.map((attacker) => attacker.readLines(() => false));
    let flooding = true;
    const flood = Promise.all(attackers.map(async (attacker, index) => {
      const data = hostileBytes(index, random, scale);
      hostileTotal += data.length;
      for (let offset = 0; offset < data.length;) {
        const size = 1 + Math.floor(random() * 8192);
        await attacker.write(data.subarray(offset, offset + size));
        offset += size;
      }
      // Ends each attacker's last unterminated line, so that it is framed and dropped.
      await attacker.write(encoder.encode("\n"));
    })).finally(() => flooding = false);

    // Alice to bob, one message at a time, while the flood lasts (at least 50).
    const conversation = (async () => {
      for (let sequence = 0; sequence < 100_000 && (flooding || sequence < 50); sequence++) {
        const sentAt = performance.now();
        await alice.write(encoder.encode(`a ${sequence}\n`));
        sent++;
        await bob.readLines((line) => {
          const rename = /^\* \S+ is now (.*)$/.exec(line);
          if (rename) {
            const key = rename[1].normalize("NFKC").toLowerCase();
            if (key === "alice" || key === "server" || /^user\d+$/.test(key)) impersonations++;
            if (/\p{Script=Cyrillic}/u.test(key) && /\p{Script=Latin}/u.test(key)) impersonations++;
            if (/[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(rename[1])) {
              impersonations++;
            }
          }
          const match = /^<alice> a (\d+)$/.exec(line);
          if (!match) return false;
          if (Number(match[1]) !== received) reordered++;
          received++;
          return Number(match[1]) === sequence;
        }, true);
        latencies.push(performance.now() - sentAt);
        if (bob.ended) break;
      }
    })();
    await withDeadline(Promise.all([flood, conversation]), deadlineMs, "hostile flood did not end");
    assert.equal(
      await listCount(bob),
      connections + 2,
      `everyone is still in the room (bystander ended: ${bob.ended}, reset: ${bob.reset})`,
    );
    for (const attacker of attackers) attacker.close();
    await Promise.all(draining);
    latencies.sort((a, b) => a - b);
    return {
      connections,
      hostileBytes: hostileTotal,
      sent,
      lost: sent - received,
      reordered,
      controlBytes: bob.controlBytes,
      invalidUtf8Lines: bob.invalidUtf8Lines,
      impersonations,
      latencyMaxMs: latencies.at(-1)!,
      latencyMedianMs: latencies[Math.floor(latencies.length / 2)],
      latencyP90Ms: latencies[Math.floor(latencies.length * 0.9)],
      ms: performance.now() - started,
      peakRss: (await server.memory()).peak,
    };
  } finally {
    alice.close();
    bob.close();
    for (const attacker of attackers) attacker.close();
  }
}

// ---- scenario: connect/close churn, some with RST, some half-open

export interface ChurnResult {
  cycles: number;
  counts: Record<string, number>;
  baselineFds: number;
  peakFdsSeen: number;
  finalFds: number;
  finalClients: number;
  /** From the end of the churn until descriptors and registry were back at baseline. */
  settleMs: number;
  ms: number;
  peakRss: number;
}

/** How churn_peer.py ends its connections; see its header. */
export const CHURN_KINDS = ["graceful", "abort", "abort_at_once", "half_close", "unread_close"];

/**
 * Runs `tests/churn_peer.py` for `cycles` connections beside one observer
 * client, then asks `/list` until the registry holds only the observer and the
 * server's open descriptors are back to what they were before the churn.
 */
export async function churn(
  server: ServerProcess,
  cycles: number,
  deadlineMs: number,
  kinds = CHURN_KINDS,
): Promise<ChurnResult> {
  const observer = await join(server.port);
  try {
    assert.equal(await listCount(observer), 1);
    const baselineFds = await server.descriptors();
    const started = performance.now();
    const peer = new Deno.Command("python3", {
      args: [`${TESTS}churn_peer.py`, String(server.port), String(cycles), "4", kinds.join(",")],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // The observer reads its join/leave notices while the churn runs, and the
    // descriptors are sampled meanwhile, between notices.
    let peakFdsSeen = baselineFds;
    let churning = true;
    const sampling = (async () => {
      for (let i = 0; i < 100_000 && churning; i++) {
        await observer.line();
        if (i % 100 === 0) peakFdsSeen = Math.max(peakFdsSeen, await server.descriptors());
      }
    })();
    const output = await withDeadline(peer.output(), deadlineMs, "churn_peer.py did not finish");
    churning = false;
    const report = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.equal(output.code, 0, `churn_peer.py failed: ${JSON.stringify(report.errors)}`);
    await observer.write(encoder.encode("/list\n"));
    await withDeadline(sampling, 5000, "observer stopped reading");
    const churned = performance.now();
    // Wait for the server to settle: each /list answer is an event, so no sleep.
    let finalClients = -1;
    let finalFds = -1;
    for (let i = 0; i < 10_000; i++) {
      finalClients = await withDeadline(listCount(observer), 5000, "/list went unanswered");
      finalFds = await server.descriptors();
      if (
        (finalClients === 1 && finalFds === baselineFds) || performance.now() - churned > 10_000
      ) {
        break;
      }
    }
    return {
      cycles: report.counts.cycles,
      counts: report.counts,
      baselineFds,
      peakFdsSeen,
      finalFds,
      finalClients,
      settleMs: performance.now() - churned,
      ms: performance.now() - started,
      peakRss: (await server.memory()).peak,
    };
  } finally {
    observer.close();
  }
}

// ---- scenario: SIGTERM while the room is busy

export interface ShutdownResult {
  clients: number;
  /** Messages relayed before the SIGTERM landed. */
  relayedBefore: number;
  noticed: number;
  /** Clients whose connection ended with the server's FIN (end of stream), not a reset. */
  finished: number;
  resets: number;
  /** Clients still sending when the server, done waiting for their FIN, closed. */
  closedWhileSending: number;
  exitCode: number;
  /** From SIGTERM to the process's exit, as this (busy) test process saw it. */
  exitMs: number;
  /** The server's own "shut down in N ms" line: from the signal to the last close. */
  serverShutdownLog: string;
  peakRss: number;
}

const SHUTDOWN_NOTICE = "* server shutting down";

/**
 * `clients` clients chat, each sending its next message only while it is at
 * most `window` messages ahead of what it has received from the others (so
 * no queue reaches its bound). Once every client has received `warmup`
 * messages, the server gets SIGTERM. Each client then stops sending, reads to
 * the notice, sends its FIN and reads to the server's FIN.
 */
export async function shutdownUnderLoad(
  server: ServerProcess,
  clients: number,
  warmup: number,
  deadlineMs: number,
): Promise<ShutdownResult> {
  const peers = await joinMany(server.port, clients);
  const window = 20;
  let warm = 0;
  const allWarm = Promise.withResolvers<void>();
  let relayedBefore = 0;
  const noticed = new Set<number>();
  let closedWhileSending = 0;
  try {
    const chatting = peers.map(async (peer, index) => {
      let got = 0;
      let target = 0;
      let wasWarm = false;
      const onLine = (line: string) => {
        if (line === SHUTDOWN_NOTICE) {
          noticed.add(index);
          return true;
        }
        if (line.startsWith("<")) got++;
        if (!wasWarm && got >= warmup) {
          wasWarm = true;
          if (++warm === clients) allWarm.resolve();
        }
        return got >= target;
      };
      for (let sequence = 0; sequence < 1_000_000 && !noticed.has(index); sequence++) {
        try {
          await peer.write(encoder.encode(`m ${index} ${sequence}\n`));
        } catch (error) {
          // The server closed first: its 2 s for our FIN ran out while we were still sending.
          const closed = error instanceof Deno.errors.BrokenPipe ||
            error instanceof Deno.errors.ConnectionReset;
          if (!closed) throw error;
          closedWhileSending++;
          return;
        }
        target = (clients - 1) * (sequence + 1 - window);
        if (got < target) await peer.readLines(onLine);
        if (peer.ended) {
          // Closed before the shutdown: the room can never be all warm, so say so now.
          if (!noticed.has(index)) {
            allWarm.reject(new Error(`client ${index} was closed before the shutdown`));
          }
          return;
        }
      }
      if (!noticed.has(index)) await peer.readLines((line) => onLine(line) && noticed.has(index));
      // Close, step 2: our FIN answers the server's; then read to its FIN.
      await peer.conn.closeWrite().catch(() => {});
      await peer.readLines(() => false);
    });
    await withDeadline(allWarm.promise, deadlineMs, "the room never got busy");
    relayedBefore = server.relayedLines;
    const { peak } = await server.memory();
    const exit = await server.terminate();
    const serverShutdownLog = await server.waitLog((line) => line.startsWith("shut down in "));
    await withDeadline(Promise.all(chatting), deadlineMs, "clients did not see the end");
    return {
      clients,
      relayedBefore,
      noticed: noticed.size,
      finished: peers.filter((peer) => peer.ended && !peer.reset).length,
      resets: peers.filter((peer) => peer.reset).length,
      closedWhileSending,
      exitCode: exit.code,
      exitMs: exit.ms,
      serverShutdownLog,
      peakRss: peak,
    };
  } finally {
    for (const peer of peers) peer.close();
  }
}
