import assert from "node:assert/strict";
import {
  consoleLog,
  DEFAULT_HOST,
  describeNetError,
  EXIT_RUNTIME_ERROR,
  EXIT_USAGE_ERROR,
  fail,
  formatAddress,
  MAX_LOG_BUFFER_BYTES,
  parseChoice,
  parseFlags,
  parseHost,
  parseInteger,
  parsePort,
  parseSeconds,
  runMain,
  UsageError,
} from "../cli.ts";

const OPTIONS = {
  port: { type: "string" },
  host: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Asserts that `run` throws a one-line UsageError whose message matches `pattern`. */
function assertUsageError(run: () => unknown, pattern: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof UsageError, `not a UsageError: ${error}`);
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /\n/, "a usage error is one line");
    assert.doesNotMatch(error.message, /\.$/, "no final period");
    return true;
  });
}

Deno.test("parseFlags() returns the values of known flags", () => {
  // node:util returns a null-prototype object; spread it to compare the values.
  assert.deepEqual({ ...parseFlags(["--port", "9000", "-h", "--host=::1"], OPTIONS) }, {
    port: "9000",
    help: true,
    host: "::1",
  });
  assert.deepEqual({ ...parseFlags([], OPTIONS) }, {});
});

Deno.test("parseFlags() rejects bad command lines with a one-line UsageError", async (t) => {
  const cases: { name: string; args: string[]; pattern: RegExp }[] = [
    { name: "an unknown long flag", args: ["--bogus"], pattern: /--bogus/ },
    { name: "an unknown short flag", args: ["-x"], pattern: /-x/ },
    { name: "a negated boolean it does not know", args: ["--no-help"], pattern: /--no-help/ },
    { name: "a missing value", args: ["--port"], pattern: /--port/ },
    { name: "a flag where a value should be", args: ["--port", "--help"], pattern: /--port/ },
    { name: "a positional argument", args: ["extra"], pattern: /extra/ },
    { name: "a positional argument after flags", args: ["--port", "1", "stray"], pattern: /stray/ },
    { name: "a positional argument after --", args: ["--", "x"], pattern: /'x'/ },
    { name: "a value for a boolean flag", args: ["--help=yes"], pattern: /--help/ },
  ];
  for (const { name, args, pattern } of cases) {
    await t.step(name, () => assertUsageError(() => parseFlags(args, OPTIONS), pattern));
  }
});

Deno.test("UsageError is an Error", () => {
  const error = new UsageError("bad");
  assert.ok(error instanceof Error);
  assert.equal(error.message, "bad");
});

Deno.test("parseInteger() accepts whole numbers within the bounds, inclusive", () => {
  assert.equal(parseInteger("--max", "1", 1, 100), 1);
  assert.equal(parseInteger("--max", "42", 1, 100), 42);
  assert.equal(parseInteger("--max", "100", 1, 100), 100);
  assert.equal(parseInteger("--big", "9007199254740991", 0, Number.MAX_SAFE_INTEGER), 2 ** 53 - 1);
});

Deno.test("parseInteger() rejects what is not a whole number in range, quoting the value", async (t) => {
  const bad = [
    "0", // below the minimum
    "101", // above the maximum
    "-1",
    "+5",
    "1.5",
    "1e2",
    "0x10",
    " 5",
    "5 ",
    "",
    "abc",
    "Infinity",
    "NaN",
    "١٢", // Arabic-Indic digits
    "５", // a full-width digit
    "99999999999999999999", // not a safe integer
  ];
  for (const value of bad) {
    await t.step(JSON.stringify(value), () => {
      assert.throws(() => parseInteger("--max", value, 1, 100), {
        name: "Error",
        message: `Cannot parse --max "${value}": must be a whole number from 1 to 100`,
      });
      assert.throws(() => parseInteger("--max", value, 1, 100), UsageError);
    });
  }
});

Deno.test("parseInteger() rejects a number too big to be exact even when the maximum allows it", () => {
  assertUsageError(
    () => parseInteger("--big", "9007199254740993", 0, Infinity),
    /^Cannot parse --big "9007199254740993": must be a whole number from 0 to Infinity$/,
  );
});

Deno.test("parseHost() takes any name or address and refuses an empty one", () => {
  assert.equal(parseHost("127.0.0.1"), "127.0.0.1");
  assert.equal(parseHost("localhost"), "localhost");
  for (const value of ["", " "]) {
    assertUsageError(
      () => parseHost(value),
      new RegExp(`^Cannot parse --host "${value}": give a name or an address$`),
    );
  }
});

Deno.test("parsePort() accepts 0 (any free port) through 65535", () => {
  assert.equal(parsePort("0"), 0);
  assert.equal(parsePort("1"), 1);
  assert.equal(parsePort("9090"), 9090);
  assert.equal(parsePort("65535"), 65535);
});

Deno.test("parsePort() rejects bad ports naming --port and quoting the value", async (t) => {
  for (const value of ["65536", "-1", "x", "", "80.0", "8080 "]) {
    await t.step(JSON.stringify(value), () => {
      assertUsageError(
        () => parsePort(value),
        new RegExp(
          `^Cannot parse --port "${
            value.replace(/[.]/g, "\\.")
          }": must be a whole number from 0 to 65535$`,
        ),
      );
    });
  }
});

Deno.test("parseChoice() accepts one of the choices exactly", () => {
  const modes = ["tcp", "udp"] as const;
  assert.equal(parseChoice("--mode", "tcp", modes), "tcp");
  assert.equal(parseChoice("--mode", "udp", modes), "udp");
});

Deno.test("parseChoice() rejects anything else, quoting the value and listing the choices", () => {
  const modes = ["tcp", "udp"];
  for (const value of ["TCP", "", "tcp ", "sctp"]) {
    assertUsageError(
      () => parseChoice("--mode", value, modes),
      new RegExp(`^Cannot parse --mode "${value}": must be tcp or udp$`),
    );
  }
  assertUsageError(
    () => parseChoice("--level", "4", ["1", "2", "3"]),
    /^Cannot parse --level "4": must be 1 or 2 or 3$/,
  );
});

Deno.test("formatAddress() writes host:port for IPv4 and brackets IPv6 hosts", async (t) => {
  const cases: { name: string; addr: Deno.NetAddr; text: string }[] = [
    {
      name: "IPv4 TCP",
      addr: { transport: "tcp", hostname: "127.0.0.1", port: 9090 },
      text: "127.0.0.1:9090",
    },
    {
      name: "IPv4 UDP",
      addr: { transport: "udp", hostname: "192.168.1.20", port: 53 },
      text: "192.168.1.20:53",
    },
    {
      name: "IPv6 loopback",
      addr: { transport: "tcp", hostname: "::1", port: 8080 },
      text: "[::1]:8080",
    },
    {
      name: "IPv6 UDP",
      addr: { transport: "udp", hostname: "2001:db8::7", port: 1 },
      text: "[2001:db8::7]:1",
    },
    {
      name: "IPv4-mapped IPv6",
      addr: { transport: "tcp", hostname: "::ffff:127.0.0.1", port: 65535 },
      text: "[::ffff:127.0.0.1]:65535",
    },
    {
      name: "a host name",
      addr: { transport: "tcp", hostname: "localhost", port: 0 },
      text: "localhost:0",
    },
  ];
  for (const { name, addr, text } of cases) {
    await t.step(name, () => assert.equal(formatAddress(addr), text));
  }
});

Deno.test("formatAddress() formats a real listener's address with the port it was given", () => {
  using listener = Deno.listen({ hostname: DEFAULT_HOST, port: 0 });
  const { port } = listener.addr;
  assert.ok(port > 0);
  assert.equal(formatAddress(listener.addr), `127.0.0.1:${port}`);
});

Deno.test("describeNetError() says a host Deno cannot parse is not a host, in one line", () => {
  for (const host of ["a b", "1.2.3.4:80"]) {
    let thrown: unknown;
    try {
      Deno.listen({ hostname: host, port: 0 });
    } catch (error) {
      thrown = error;
    }
    assert.equal(
      describeNetError("server.ts", thrown, `server.ts: cannot listen on ${host}`),
      `server.ts: cannot listen on ${host}: not a host name or address`,
    );
  }
});

Deno.test("describeNetError() says the address is in use for a real AddrInUse", () => {
  using first = Deno.listen({ hostname: DEFAULT_HOST, port: 0 });
  const { port } = first.addr;
  let error: unknown;
  try {
    using _second = Deno.listen({ hostname: DEFAULT_HOST, port });
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof Deno.errors.AddrInUse, `got ${error}`);
  assert.equal(
    describeNetError("server.ts", error, `Cannot listen on 127.0.0.1:${port}`),
    `Cannot listen on 127.0.0.1:${port}: address already in use`,
  );
});

Deno.test("describeNetError() says the connection was refused for a real ConnectionRefused", async () => {
  // A port that was just free: nothing listens there once the listener is closed.
  const listener = Deno.listen({ hostname: DEFAULT_HOST, port: 0 });
  const { port } = listener.addr;
  listener.close();
  const error = await Deno.connect({ hostname: DEFAULT_HOST, port }).then(
    (conn) => {
      conn.close();
      return undefined;
    },
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof Deno.errors.ConnectionRefused, `got ${error}`);
  assert.equal(
    describeNetError("client.ts", error, `Cannot connect to 127.0.0.1:${port}`),
    `Cannot connect to 127.0.0.1:${port}: connection refused`,
  );
});

Deno.test({
  name: "describeNetError() tells how to grant the permission for a real NotCapable",
  permissions: { net: false },
  fn() {
    let error: unknown;
    try {
      using _listener = Deno.listen({ hostname: DEFAULT_HOST, port: 0 });
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof Deno.errors.NotCapable, `got ${error}`);
    assert.equal(
      describeNetError("udp_server.ts", error, "Cannot listen"),
      `udp_server.ts: no network permission for ${DEFAULT_HOST}:0: run it as deno run ` +
        `--allow-net udp_server.ts (or --allow-net=${DEFAULT_HOST}:0, for that alone)`,
    );
  },
});

Deno.test("describeNetError() gives one line for each expected network error", async (t) => {
  const cases: { error: Error; reason: string }[] = [
    { error: new Deno.errors.AddrInUse("x"), reason: "address already in use" },
    {
      error: new Deno.errors.AddrNotAvailable("x"),
      reason: "address not available on this machine",
    },
    { error: new Deno.errors.ConnectionRefused("x"), reason: "connection refused" },
    { error: new Deno.errors.ConnectionReset("x"), reason: "connection reset" },
    { error: new Deno.errors.TimedOut("x"), reason: "timed out" },
    { error: new Deno.errors.NetworkUnreachable("x"), reason: "network unreachable" },
    {
      error: new Deno.errors.PermissionDenied("x"),
      reason: "permission denied (ports below 1024 need root)",
    },
    {
      error: new Error("failed to lookup address information: Name or service not known"),
      reason: "unknown host",
    },
    {
      error: new Error(
        "failed to lookup address information: Temporary failure in name resolution",
      ),
      reason: "unknown host",
    },
  ];
  for (const { error, reason } of cases) {
    await t.step(`${error.name}: ${reason}`, () => {
      assert.equal(
        describeNetError("client.ts", error, "Cannot connect"),
        `Cannot connect: ${reason}`,
      );
    });
  }
  await t.step("NotCapable", () => {
    assert.equal(
      describeNetError("client.ts", new Deno.errors.NotCapable("x"), "Cannot connect"),
      "client.ts: no network permission: run it as deno run --allow-net client.ts",
    );
  });
});

Deno.test("describeNetError() returns undefined for an unexpected error so it is not swallowed", () => {
  for (
    const error of [
      new Error("boom"),
      new TypeError("x is not a function"),
      new Deno.errors.NotFound("no such file"),
      new Deno.errors.BrokenPipe("broken pipe"),
      "a string",
      undefined,
      null,
      { message: "failed to lookup" },
    ]
  ) {
    assert.equal(describeNetError("server.ts", error, "Cannot listen"), undefined, String(error));
  }
});

Deno.test("the exit codes are 2 for usage errors and 1 for runtime errors", () => {
  assert.equal(EXIT_USAGE_ERROR, 2);
  assert.equal(EXIT_RUNTIME_ERROR, 1);
});

/** Thrown by the stand-in for `Deno.exit`, which must not return. */
class Exit extends Error {
  constructor(readonly code: number | undefined) {
    super(`exit ${code}`);
  }
}

/**
 * Runs `body` with `Deno.exit` and `console.error` replaced, and returns the
 * exit code and the lines printed on stderr.
 */
async function captureExit(
  body: () => unknown,
): Promise<{ code: number | undefined; stderr: string[] }> {
  const realExit = Deno.exit;
  const realError = console.error;
  const stderr: string[] = [];
  Deno.exit = (code?: number): never => {
    throw new Exit(code);
  };
  console.error = (...data: unknown[]) => stderr.push(data.join(" "));
  try {
    await body();
  } catch (error) {
    if (error instanceof Exit) return { code: error.code, stderr };
    throw error;
  } finally {
    Deno.exit = realExit;
    console.error = realError;
  }
  throw new Error("Deno.exit was not called");
}

Deno.test("fail() prints one line on stderr and exits 1 unless told otherwise", async () => {
  assert.deepEqual(await captureExit(() => fail("client.ts: connection refused")), {
    code: 1,
    stderr: ["client.ts: connection refused"],
  });
  assert.deepEqual(await captureExit(() => fail("bad", EXIT_USAGE_ERROR)), {
    code: 2,
    stderr: ["bad"],
  });
});

Deno.test("runMain() exits with the code main returns, or 0", async () => {
  assert.deepEqual(await captureExit(() => runMain("server.ts", () => Promise.resolve(3))), {
    code: 3,
    stderr: [],
  });
  assert.deepEqual(await captureExit(() => runMain("server.ts", () => Promise.resolve())), {
    code: 0,
    stderr: [],
  });
});

Deno.test("runMain() turns a UsageError into one line pointing to --help and exit 2", async () => {
  const result = await captureExit(() =>
    runMain("server.ts", () => Promise.reject(new UsageError("Unknown option '--bogus'")))
  );
  assert.deepEqual(result, {
    code: 2,
    stderr: ["server.ts: Unknown option '--bogus' (see --help)"],
  });
});

Deno.test("runMain() turns parseFlags()'s error for a bad flag into a usage message", async () => {
  const result = await captureExit(() =>
    runMain("client.ts", () => {
      parseFlags(["--prot", "1"], OPTIONS);
      return Promise.resolve(0);
    })
  );
  assert.equal(result.code, EXIT_USAGE_ERROR);
  assert.equal(result.stderr.length, 1);
  assert.match(result.stderr[0], /^client\.ts: .*--prot.* \(see --help\)$/);
});

Deno.test("runMain() turns NotCapable into the permission hint and exit 1", async () => {
  const result = await captureExit(() =>
    runMain(
      "udp_client.ts",
      () => Promise.reject(new Deno.errors.NotCapable("Requires net access")),
    )
  );
  assert.deepEqual(result, {
    code: 1,
    stderr: ["udp_client.ts: no network permission: run it as deno run --allow-net udp_client.ts"],
  });
});

Deno.test("runMain() lets an unexpected error through without exiting", async () => {
  const bug = new TypeError("undefined is not a function");
  await assert.rejects(
    captureExit(() => runMain("server.ts", () => Promise.reject(bug))),
    (error) => error === bug,
  );
});

/** A console that holds each write until the test lets it finish. */
class SlowConsole {
  writes: string[] = [];
  /** Resolves when the first write arrives. */
  firstWrite = Promise.withResolvers<void>();
  #release: (() => void)[] = [];

  write(bytes: Uint8Array): Promise<number> {
    this.writes.push(new TextDecoder().decode(bytes));
    this.firstWrite.resolve();
    return new Promise((resolve) => this.#release.push(() => resolve(bytes.length)));
  }

  releaseAll(): void {
    this.#release.splice(0).forEach((release) => release());
  }
}

/** Lets every write of `out` finish until `log` has written everything. */
async function drainLog(log: ReturnType<typeof consoleLog>, out: SlowConsole): Promise<void> {
  let flushing = true;
  const flushed = log.flushed().then(() => (flushing = false));
  while (flushing) {
    out.releaseAll();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await flushed;
}

Deno.test("consoleLog() writes lines logged close together in one write, in order", async () => {
  const out = new SlowConsole();
  const log = consoleLog(out);
  log.line("one");
  log.line("two");
  await Promise.resolve();
  log.line("三");
  await drainLog(log, out);
  assert.deepEqual(out.writes, ["one\ntwo\n三\n"]);
});

Deno.test("consoleLog() holds at most its bound for a slow console and counts what it drops", async () => {
  const out = new SlowConsole();
  const log = consoleLog(out);
  log.line("first");
  await out.firstWrite.promise;
  // The first write is now stuck: everything after it waits in the buffer.
  const line = "x".repeat(1000);
  const lines = Math.ceil(MAX_LOG_BUFFER_BYTES / 1001) + 50;
  for (let i = 0; i < lines; i++) log.line(line);
  await drainLog(log, out);
  const written = out.writes.join("").split("\n").filter((text) => text !== "");
  const kept = written.filter((text) => text === line).length;
  assert.ok(kept * 1001 <= MAX_LOG_BUFFER_BYTES, `${kept} lines were buffered`);
  const dropped = Number(/^\((\d+) log lines dropped/.exec(written[written.length - 1])?.[1]);
  assert.equal(kept + dropped, lines);
});

Deno.test("parseSeconds() takes fractions, 0 only where it means something, at most a day", () => {
  assert.equal(parseSeconds("--peer-timeout", "0.25"), 0.25);
  assert.equal(parseSeconds("--idle-timeout", "0", "never"), 0);
  assert.equal(parseSeconds("--idle-timeout", "86400", "never"), 86_400);
  assertUsageError(
    () => parseSeconds("--peer-timeout", "0"),
    /--peer-timeout "0": must be seconds above 0/,
  );
  for (const bad of ["-1", "abc", "1e3", "86401", "", ".5", "1."]) {
    assertUsageError(
      () => parseSeconds("--idle-timeout", bad, "never"),
      /^Cannot parse --idle-timeout ".*": must be seconds from 0 \(never\), at most 86400$/,
    );
  }
});
