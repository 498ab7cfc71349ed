import assert from "node:assert/strict";
import {
  canonicalHost,
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
  readFlagFile,
  runMain,
  RuntimeError,
  UsageError,
} from "../cli.ts";
import { finish, NEEDS_SPAWN, ROOT, runProgram, within } from "./util.ts";

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

Deno.test("parseHost() refuses a link-local IPv6 address without its zone, showing the form with one", () => {
  const cases: [string, string][] = [
    ["fe80::1", "fe80::1"],
    ["FE80::1", "FE80::1"],
    ["[fe80::1]", "fe80::1"],
    ["fe80:0:0:0:0:0:0:1", "fe80:0:0:0:0:0:0:1"],
    ["febf::1", "febf::1"], // the last of fe80::/10
  ];
  for (const [value, address] of cases) {
    assert.throws(() => parseHost(value), (error: unknown) => {
      assert.ok(error instanceof UsageError, `not a UsageError: ${error}`);
      assert.equal(
        error.message,
        `Cannot parse --host "${value}": a link-local address needs its zone, ` +
          `the interface to use, as in ${address}%eth0`,
      );
      return true;
    });
  }
});

Deno.test("parseHost() takes a link-local address with its zone, and addresses outside fe80::/10", () => {
  for (
    const value of [
      "fe80::1%eth0",
      "fe80::1%2",
      "fec0::1", // just after fe80::/10
      "fe7f::1", // just before it
      "fe8::1", // 0fe8::1
      "::1",
      "2001:db8::1",
      "fe80.example", // a host name
    ]
  ) {
    assert.equal(parseHost(value), value);
  }
});

Deno.test("parseHost() takes an IPv6 address in brackets and returns it without them", () => {
  const cases: [string, string][] = [
    ["[::1]", "::1"],
    ["[::]", "::"],
    ["[2001:db8::1]", "2001:db8::1"],
    ["[fe80::1%lo]", "fe80::1%lo"],
    ["[::ffff:127.0.0.1]", "::ffff:127.0.0.1"],
  ];
  for (const [value, host] of cases) assert.equal(parseHost(value), host, value);
});

Deno.test("parseHost() refuses brackets around anything but an IPv6 address, or a port after them", () => {
  for (const value of ["[127.0.0.1]", "[localhost]", "[]", "[::1", "::1]", "[[::1]]", "a[b]"]) {
    assertUsageError(
      () => parseHost(value),
      new RegExp(
        `^Cannot parse --host "${
          RegExp.escape(value)
        }": brackets go around an IPv6 address only, as in \\[::1\\]$`,
      ),
    );
  }
  for (const value of ["[::1]:9090", "127.0.0.1:9090", "localhost:9090", "example.com:"]) {
    assertUsageError(
      () => parseHost(value),
      new RegExp(`^Cannot parse --host "${RegExp.escape(value)}": give the port with --port$`),
    );
  }
  // The link-local check looks inside the brackets.
  assertUsageError(() => parseHost("[fe80::1]"), /needs its zone, .* as in fe80::1%eth0$/);
});

Deno.test("parseHost() refuses an empty zone", () => {
  assertUsageError(
    () => parseHost("fe80::1%"),
    /^Cannot parse --host "fe80::1%": the zone after % is empty \(name the interface, as in fe80::1%eth0\)$/,
  );
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
      name: "IPv4-mapped IPv6: the IPv4 address it is",
      addr: { transport: "tcp", hostname: "::ffff:127.0.0.1", port: 65535 },
      text: "127.0.0.1:65535",
    },
    {
      name: "IPv4-mapped IPv6 in hex and capitals",
      addr: { transport: "udp", hostname: "0:0:0:0:0:FFFF:C0A8:0114", port: 53 },
      text: "192.168.1.20:53",
    },
    {
      name: "IPv6 in its shortest form, lower case",
      addr: { transport: "udp", hostname: "2001:DB8:0:0:0:0:0:7", port: 1 },
      text: "[2001:db8::7]:1",
    },
    {
      name: "IPv6 with its zone",
      addr: { transport: "udp", hostname: "fe80:0::1%eth0", port: 9090 },
      text: "[fe80::1%eth0]:9090",
    },
    {
      name: "IPv4-compatible IPv6 (::/96) is not mapped",
      addr: { transport: "tcp", hostname: "::7f00:1", port: 1 },
      text: "[::7f00:1]:1",
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

Deno.test("canonicalHost() writes every spelling of one address the same way", () => {
  const spellings: [string, string[]][] = [
    ["127.0.0.1", ["127.0.0.1", "::ffff:127.0.0.1", "::FFFF:7F00:1", "0:0:0:0:0:ffff:7f00:0001"]],
    ["::1", ["::1", "0:0:0:0:0:0:0:1", "0::1", "::0:1"]],
    ["fe80::1%lo", ["fe80::1%lo", "FE80:0:0::1%lo"]],
    ["localhost", ["localhost"]],
    ["not:an:address", ["not:an:address"]],
  ];
  for (const [canonical, written] of spellings) {
    for (const host of written) assert.equal(canonicalHost(host), canonical, host);
  }
});

Deno.test("canonicalHost() stays right for more addresses than it remembers", () => {
  // Three rounds over 3,000 sources: the remembered spellings fill up and are
  // forgotten several times, and an address seen again is spelled as before.
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3000; i++) {
      const group = (i + 1).toString(16); // never 0, which "::" would take in
      assert.equal(canonicalHost(`2001:0DB8:0:0:0:0:${group}:0001`), `2001:db8::${group}:1`);
      const [high, low] = [(i >> 8) & 0xff, i & 0xff];
      assert.equal(canonicalHost(`::ffff:10.0.${high}.${low}`), `10.0.${high}.${low}`);
    }
  }
});

Deno.test("formatAddress() writes an IPv4 peer of a dual-stack listener as IPv4, an IPv6 one in brackets", async () => {
  using listener = Deno.listen({ hostname: "::", port: 0 });
  const { port } = listener.addr;
  for (const [hostname, shown] of [["127.0.0.1", "127.0.0.1"], ["::1", "[::1]"]]) {
    using client = await Deno.connect({ hostname, port });
    using accepted = await listener.accept();
    const from = `${shown}:${client.localAddr.port}`;
    assert.equal(formatAddress(accepted.remoteAddr), from, accepted.remoteAddr.hostname);
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

/** An error as Deno throws it for a failed system call: its message and errno name. */
function osError(
  message: string,
  code: string,
  kind: new (message: string) => Error = Error,
): Error {
  return Object.assign(new kind(message), { code });
}

Deno.test("describeNetError() gives one line for each expected network error", async (t) => {
  const cases: { error: Error; reason: string }[] = [
    { error: new Deno.errors.AddrInUse("x"), reason: "address already in use" },
    {
      error: new Deno.errors.AddrNotAvailable("x"),
      reason: "no address of this machine can reach it (address not available)",
    },
    { error: new Deno.errors.ConnectionRefused("x"), reason: "connection refused" },
    { error: new Deno.errors.ConnectionReset("x"), reason: "connection reset" },
    { error: new Deno.errors.ConnectionAborted("x"), reason: "connection aborted" },
    { error: new Deno.errors.TimedOut("x"), reason: "no answer in time (timed out)" },
    {
      error: new Deno.errors.NetworkUnreachable("x"),
      reason: "no route to that network (network is unreachable)",
    },
    {
      error: osError("No route to host (os error 113)", "EHOSTUNREACH"),
      reason: "no route to that host (host is unreachable)",
    },
    {
      // Without a code, the system's words name the errno.
      error: new Error("No route to host (os error 65)"),
      reason: "no route to that host (host is unreachable)",
    },
    {
      error: new Deno.errors.PermissionDenied("x"),
      reason: "forbidden by a firewall or a route of this machine, or a broadcast address " +
        "(permission denied)",
    },
    {
      error: osError("Operation not permitted (os error 1)", "EPERM", Deno.errors.PermissionDenied),
      reason: "forbidden by a firewall or a route of this machine, or a broadcast address " +
        "(permission denied)",
    },
    {
      error: osError("Invalid argument (os error 22)", "EINVAL", TypeError),
      reason: "the system refuses that address: a blackhole route, or a link-local address " +
        "without its zone, as in fe80::1%eth0 (invalid argument)",
    },
    {
      error: osError("Address family not supported by protocol (os error 97)", "EAFNOSUPPORT"),
      reason: "this machine has that address family, IPv4 or IPv6, turned off " +
        "(address family not supported)",
    },
    {
      error: osError("Network is down (os error 100)", "ENETDOWN"),
      reason: "the network interface is down (network is down)",
    },
    {
      error: osError("Host is down (os error 112)", "EHOSTDOWN"),
      reason: "that host is down (host is down)",
    },
    {
      error: new Error("No such device (os error 19)"),
      reason: "no such network interface (no such device)",
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
    await t.step(`${error.name} ${error.message}: ${reason}`, () => {
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

Deno.test("describeNetError() gives the reason for our own address when listening or binding", () => {
  const cases: { error: Error; reason: string }[] = [
    {
      error: osError("Cannot assign requested address (os error 99)", "EADDRNOTAVAIL"),
      reason: "not an address of this machine (address not available)",
    },
    {
      error: osError("Permission denied (os error 13)", "EACCES", Deno.errors.PermissionDenied),
      reason: "permission denied (ports below 1024 need root)",
    },
  ];
  for (const { error, reason } of cases) {
    for (const action of ["server.ts: cannot listen on 10.0.0.1:80", "x: cannot open a socket"]) {
      assert.equal(describeNetError("server.ts", error, action), `${action}: ${reason}`);
    }
    // The same error when connecting is about the peer's address, not ours,
    // even when the peer's name has one of the verbs in it.
    for (const host of ["10.0.0.1", "listen.example", "open"]) {
      const action = `client.ts: cannot connect to ${host}:80`;
      assert.notEqual(describeNetError("client.ts", error, action), `${action}: ${reason}`);
    }
  }
});

Deno.test("describeNetError() explains a real EINVAL from a link-local address without its zone", () => {
  // Linux refuses the bind at once: nothing is bound, nothing is sent.
  let error: unknown;
  try {
    using _listener = Deno.listen({ hostname: "fe80::1", port: 0 });
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof TypeError, `got ${error}`);
  assert.equal(
    describeNetError("server.ts", error, "server.ts: cannot listen on [fe80::1]:0"),
    "server.ts: cannot listen on [fe80::1]:0: the system refuses that address: a blackhole " +
      "route, or a link-local address without its zone, as in fe80::1%eth0 (invalid argument)",
  );
});

Deno.test("describeNetError() explains a real EAFNOSUPPORT: an IPv6 peer for an IPv4 socket", async () => {
  // The send fails before anything is sent (and ::1 is the loopback anyway).
  const socket = Deno.listenDatagram({ transport: "udp", hostname: DEFAULT_HOST, port: 0 });
  const error = await socket.send(new Uint8Array(1), { transport: "udp", hostname: "::1", port: 9 })
    .then(() => undefined, (caught: unknown) => caught)
    .finally(() => socket.close());
  assert.ok(error instanceof Error, `got ${error}`);
  assert.equal(
    describeNetError("udp_client.ts", error, "udp_client.ts: cannot send to [::1]:9"),
    "udp_client.ts: cannot send to [::1]:9: this machine has that address family, IPv4 or " +
      "IPv6, turned off (address family not supported)",
  );
});

Deno.test("describeNetError() names a zone that is no interface of this machine, by name or number", async (t) => {
  // A name fails the lookup, a number fails with ENODEV: both before any bind.
  for (const zone of ["nosuch0", "99999"]) {
    await t.step(zone, () => {
      let error: unknown;
      try {
        using _listener = Deno.listen({ hostname: `fe80::1%${zone}`, port: 0 });
      } catch (caught) {
        error = caught;
      }
      const action = `server.ts: cannot listen on [fe80::1%${zone}]:0`;
      assert.equal(
        describeNetError("server.ts", error, action),
        `${action}: no network interface "${zone}" on this machine (the zone after %)`,
      );
    });
  }
});

Deno.test("describeNetError() returns undefined for an unexpected error so it is not swallowed", () => {
  for (
    const error of [
      new Error("boom"),
      new TypeError("x is not a function"),
      new Deno.errors.NotFound("no such file"),
      new Deno.errors.BrokenPipe("broken pipe"),
      // An errno this table does not know, and a Node.js error code, are not network failures.
      osError("No such file or directory (os error 2)", "ENOENT", Deno.errors.NotFound),
      osError('The "path" argument must be of type string', "ERR_INVALID_ARG_TYPE", TypeError),
      new TypeError("Invalid argument"),
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

// ---- the scripts' network errors, run in network namespaces of their own
//
// Each script runs under `unshare -rn`: a new network namespace with only a
// loopback, down, and whatever routes `setup` adds. Connecting or sending to
// 10.0.0.1 or 2001:db8::1 there fails at once, and nothing could leave this
// machine even if it did not. Without unshare these tests fail; they never skip.

/** The shell run inside the namespace: it checks the namespace, runs `setup`, then the command. */
function inFreshNamespace(setup: string[]): string {
  return [
    "set -e",
    // Nothing may reach another machine: refuse to go on unless the only
    // interface here is the loopback (/proc/net/dev lists this namespace's).
    `test "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')" = lo ||` +
    ` { echo "not in a fresh network namespace: refusing to run" >&2; exit 97; }`,
    ...setup,
    'exec "$@"',
  ].join("\n");
}

/** `ip` commands for a namespace whose loopback is up (::1 and 127.0.0.1 exist, no routes out). */
const LOOPBACK_UP = ["ip link set lo up"];

/** The arguments of `unshare` that run `command` in a fresh namespace set up by `setup`. */
function unshareArgs(setup: string[], command: string[]): string[] {
  return ["-rn", "sh", "-c", inFreshNamespace(setup), "sh", ...command];
}

/** `deno run --allow-net <script> ...args`, for {@linkcode unshareArgs}. */
function denoRun(script: string, args: string[]): string[] {
  return [Deno.execPath(), "run", "--quiet", "--allow-net", script, ...args];
}

/** Fails naming the reason when unshare could not make the namespace. */
function assertUnshareWorked(stderr: string): void {
  if (/^unshare: /m.test(stderr)) {
    throw new Error(
      `unshare -rn is unusable here, and these tests need it (they never skip): ${stderr.trim()}`,
    );
  }
}

/**
 * Runs `script` in a fresh namespace with one line of input (what the
 * clients send); resolves when it exits.
 */
async function runIsolated(
  setup: string[],
  script: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command("unshare", {
    args: unshareArgs(setup, denoRun(script, args)),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    // Every case here ends at once; a hang is a failure, not a wait.
    signal: AbortSignal.timeout(30_000),
  }).spawn();
  const input = child.stdin.getWriter();
  // A script that fails first may have closed its stdin already.
  await input.write(new TextEncoder().encode("你好\n")).catch(() => {});
  await input.close().catch(() => {});
  const output = await child.output();
  const stderr = new TextDecoder().decode(output.stderr);
  assertUnshareWorked(stderr);
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout), stderr };
}

/** A script run and what it must print on stderr (line by line) and exit with. */
interface ErrorCase {
  setup: string[];
  script: string;
  args: string[];
  stderr: string[];
  code: number;
}

/** Runs each case as a step; the whole of stderr must be its lines: no stack trace, nothing more. */
async function assertErrorCases(t: Deno.TestContext, cases: ErrorCase[]): Promise<void> {
  for (const { setup, script, args, stderr, code } of cases) {
    await t.step(`${script} ${args.join(" ")}`, async () => {
      const result = await runIsolated(setup, script, args);
      assert.doesNotMatch(result.stderr, /Uncaught|^\s+at /m, "a stack trace");
      assert.equal(result.stderr, stderr.map((line) => line + "\n").join(""));
      assert.equal(result.code, code);
    });
  }
}

/** udp_client.ts flags that make one try, so the run ends at once with its exit code. */
const ONE_TRY = ["--expect-reply", "--retries", "0", "--timeout", "100"];

Deno.test({
  name: "unshare -rn gives the tests a network namespace of their own with only a loopback, down",
  ignore: NEEDS_SPAWN,
  async fn() {
    const output = await new Deno.Command("unshare", {
      args: unshareArgs([], ["ip", "-o", "link", "show"]),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertUnshareWorked(stderr);
    assert.equal(output.code, 0, stderr);
    const links = new TextDecoder().decode(output.stdout).trim().split("\n");
    assert.equal(links.length, 1, links.join("\n"));
    assert.match(links[0], /^1: lo: <LOOPBACK>/);
  },
});

Deno.test({
  name: "the clients say in one line that there is no route to the network, and exit 1",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    const noRoute = "no route to that network (network is unreachable)";
    await assertErrorCases(t, [
      {
        setup: [],
        script: "client.ts",
        args: ["--host", "10.0.0.1"],
        stderr: [`client.ts: cannot connect to 10.0.0.1:9090: ${noRoute}`],
        code: 1,
      },
      {
        setup: LOOPBACK_UP,
        script: "client.ts",
        args: ["--host", "2001:db8::1"],
        stderr: [`client.ts: cannot connect to [2001:db8::1]:9090: ${noRoute}`],
        code: 1,
      },
      // udp_client.ts reports a failed send and goes on: with one try, its
      // summary follows, and the exit code says that nothing came back.
      {
        setup: [],
        script: "udp_client.ts",
        args: ["--host", "10.0.0.1", ...ONE_TRY],
        stderr: [
          `udp_client.ts: cannot send to 10.0.0.1:9090: ${noRoute}`,
          "no reply from 10.0.0.1:9090 after 1 try",
        ],
        code: 1,
      },
      {
        setup: LOOPBACK_UP,
        script: "udp_client.ts",
        args: ["--host", "2001:db8::1", ...ONE_TRY],
        stderr: [
          `udp_client.ts: cannot send to [2001:db8::1]:9090: ${noRoute}`,
          "no reply from [2001:db8::1]:9090 after 1 try",
        ],
        code: 1,
      },
      // Expecting no reply, it still exits 1: the line it was given was not sent.
      {
        setup: [],
        script: "udp_client.ts",
        args: ["--host", "10.0.0.1", "--wait", "0"],
        stderr: [`udp_client.ts: cannot send to 10.0.0.1:9090: ${noRoute}`],
        code: 1,
      },
    ]);
  },
});

Deno.test({
  name:
    "the clients explain in one line a host route that is unreachable, prohibited or a blackhole",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    // The three route types Linux answers with EHOSTUNREACH, EACCES and EINVAL.
    const routes = [
      ...LOOPBACK_UP,
      "ip route add unreachable 10.1.0.0/16",
      "ip route add prohibit 10.2.0.0/16",
      "ip route add blackhole 10.3.0.0/16",
      "ip -6 route add unreachable 2001:db8:1::/48",
    ];
    const unreachable = "no route to that host (host is unreachable)";
    const forbidden = "forbidden by a firewall or a route of this machine, or a broadcast " +
      "address (permission denied)";
    const refused = "the system refuses that address: a blackhole route, or a link-local " +
      "address without its zone, as in fe80::1%eth0 (invalid argument)";
    await assertErrorCases(t, [
      {
        setup: routes,
        script: "client.ts",
        args: ["--host", "10.1.0.1"],
        stderr: [`client.ts: cannot connect to 10.1.0.1:9090: ${unreachable}`],
        code: 1,
      },
      {
        setup: routes,
        script: "client.ts",
        args: ["--host", "2001:db8:1::1"],
        stderr: [`client.ts: cannot connect to [2001:db8:1::1]:9090: ${unreachable}`],
        code: 1,
      },
      {
        setup: routes,
        script: "udp_client.ts",
        args: ["--host", "10.1.0.1", ...ONE_TRY],
        stderr: [
          `udp_client.ts: cannot send to 10.1.0.1:9090: ${unreachable}`,
          "no reply from 10.1.0.1:9090 after 1 try",
        ],
        code: 1,
      },
      {
        setup: routes,
        script: "client.ts",
        args: ["--host", "10.2.0.1"],
        stderr: [`client.ts: cannot connect to 10.2.0.1:9090: ${forbidden}`],
        code: 1,
      },
      {
        setup: routes,
        script: "client.ts",
        args: ["--host", "10.3.0.1"],
        stderr: [`client.ts: cannot connect to 10.3.0.1:9090: ${refused}`],
        code: 1,
      },
      {
        setup: routes,
        script: "udp_client.ts",
        args: ["--host", "10.3.0.1", ...ONE_TRY],
        stderr: [
          `udp_client.ts: cannot send to 10.3.0.1:9090: ${refused}`,
          "no reply from 10.3.0.1:9090 after 1 try",
        ],
        code: 1,
      },
    ]);
  },
});

Deno.test({
  name: "a client on a machine without an IPv6 address says none can reach an IPv6 peer",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    // With the loopback down, the namespace has no IPv6 address at all.
    await assertErrorCases(t, [{
      setup: [],
      script: "client.ts",
      args: ["--host", "2001:db8::1"],
      stderr: [
        "client.ts: cannot connect to [2001:db8::1]:9090: no address of this machine can reach " +
        "it (address not available)",
      ],
      code: 1,
    }]);
  },
});

Deno.test({
  name: "the servers say in one line that the address to listen on is not one of this machine",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    const cases: ErrorCase[] = [];
    for (const script of ["server.ts", "udp_server.ts"]) {
      for (const [host, shown] of [["10.0.0.1", "10.0.0.1"], ["2001:db8::1", "[2001:db8::1]"]]) {
        cases.push({
          setup: LOOPBACK_UP,
          script,
          args: ["--host", host, "--port", "0"],
          stderr: [
            `${script}: cannot listen on ${shown}:0: not an address of this machine ` +
            `(address not available)`,
          ],
          code: 1,
        });
      }
    }
    await assertErrorCases(t, cases);
  },
});

const SCRIPTS = ["server.ts", "client.ts", "udp_server.ts", "udp_client.ts"];

Deno.test({
  name: "every script refuses a link-local address without its zone in one usage line, exit 2",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    await assertErrorCases(
      t,
      SCRIPTS.map((script) => ({
        setup: [],
        script,
        args: ["--host", "fe80::1"],
        stderr: [
          `${script}: Cannot parse --host "fe80::1": a link-local address needs its zone, ` +
          `the interface to use, as in fe80::1%eth0 (see --help)`,
        ],
        code: 2,
      })),
    );
  },
});

Deno.test({
  name: "every script says in one line that the zone names no interface of this machine",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    await assertErrorCases(
      t,
      SCRIPTS.map((script) => {
        const action = script.includes("server")
          ? "cannot listen on [fe80::1%nosuch0]:0"
          : `cannot ${script === "client.ts" ? "connect" : "send"} to [fe80::1%nosuch0]:9090`;
        const error = `${script}: ${action}: no network interface "nosuch0" on this machine ` +
          `(the zone after %)`;
        return {
          setup: [],
          script,
          args: [
            "--host",
            "fe80::1%nosuch0",
            ...(script.includes("server") ? ["--port", "0"] : []),
            ...(script === "udp_client.ts" ? ONE_TRY : []),
          ],
          stderr: script === "udp_client.ts"
            ? [error, "no reply from [fe80::1%nosuch0]:9090 after 1 try"]
            : [error],
          code: 1,
        };
      }),
    );
  },
});

Deno.test({
  name: "every script refuses brackets around an IPv4 address in one usage line, exit 2",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    await assertErrorCases(
      t,
      SCRIPTS.map((script) => ({
        setup: [],
        script,
        args: ["--host", "[127.0.0.1]"],
        stderr: [
          `${script}: Cannot parse --host "[127.0.0.1]": brackets go around an IPv6 address ` +
          `only, as in [::1] (see --help)`,
        ],
        code: 2,
      })),
    );
  },
});

Deno.test({
  name: "server.ts and client.ts talk over a link-local address given with its zone",
  ignore: NEEDS_SPAWN,
  async fn() {
    // fe80::1 on the namespace's own loopback: the zone is "lo".
    const setup = [...LOOPBACK_UP, "ip addr add fe80::1/64 dev lo nodad"];
    const server = runProgram(
      "unshare",
      unshareArgs(
        setup,
        denoRun("server.ts", ["--host", "fe80::1%lo", "--port", "0", "--mode", "echo"]),
      ),
      { NO_COLOR: "1" },
    );
    try {
      // Deno's addresses carry no zone: the server shows fe80::1 alone.
      const listening = await within(
        30_000,
        "the server's listening line",
        server.stdout.until((line) => /listening on /.test(line)),
      );
      const port = /^(?:\S+Z )?listening on \[fe80::1\]:(\d+) \(tcp, echo\)$/.exec(listening)?.[1];
      assert.ok(port !== undefined, `the listening line: ${listening}`);
      // The client joins the server's namespace (its user namespace too, where it may enter).
      const client = new Deno.Command("nsenter", {
        args: [
          "--target",
          String(server.child.pid),
          "--user",
          "--net",
          "--preserve-credentials",
          ...denoRun("client.ts", ["--host", "fe80::1%lo", "--port", port]),
        ],
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).spawn();
      const input = client.stdin.getWriter();
      await input.write(new TextEncoder().encode("你好，世界\n"));
      await input.close();
      const output = await client.output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      assert.match(stderr, /^connected to \[fe80::1\]:\d+ from \[fe80::1\]:\d+$/m);
      assert.equal(new TextDecoder().decode(output.stdout), "你好，世界\n");
    } finally {
      server.child.kill("SIGTERM");
      await finish(server);
    }
  },
});

Deno.test({
  name: "udp_server.ts and udp_client.ts talk over a link-local address given with its zone",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    // fe80::1 on the namespace's own loopback: the zone is "lo". Deno reports
    // the server's answers as from fe80::1, without the zone the client was given.
    const setup = [...LOOPBACK_UP, "ip -6 addr add fe80::1/64 dev lo nodad"];
    const server = runProgram(
      "unshare",
      unshareArgs(
        setup,
        denoRun("udp_server.ts", ["--host", "fe80::1%lo", "--port", "0", "--mode", "echo"]),
      ),
      { NO_COLOR: "1" },
    );
    try {
      const listening = await within(
        30_000,
        "the server's listening line",
        server.stdout.until((line) => /listening on /.test(line)),
      );
      const port = /^(?:\S+Z )?listening on \[fe80::1\]:(\d+) \(udp, echo\)$/.exec(listening)
        ?.[1];
      assert.ok(port !== undefined, `the listening line: ${listening}`);
      const cases: [string, string[], { stdout: string; stderr: string }][] = [
        ["piped", ["--wait", "200"], { stdout: "你好，世界\n", stderr: "" }],
        [
          "with --expect-reply",
          ["--expect-reply", "--retries", "0"],
          { stdout: "你好，世界\n", stderr: "sent 1, answered 1, lost 0\n" },
        ],
      ];
      for (const [name, flags, expected] of cases) {
        await t.step(name, async () => {
          // The client joins the server's namespace (its user namespace too, where it may enter).
          const client = new Deno.Command("nsenter", {
            args: [
              "--target",
              String(server.child.pid),
              "--user",
              "--net",
              "--preserve-credentials",
              ...denoRun("udp_client.ts", ["--host", "fe80::1%lo", "--port", port, ...flags]),
            ],
            cwd: ROOT,
            env: { NO_COLOR: "1" },
            stdin: "piped",
            stdout: "piped",
            stderr: "piped",
            signal: AbortSignal.timeout(30_000),
          }).spawn();
          const input = client.stdin.getWriter();
          await input.write(new TextEncoder().encode("你好，世界\n"));
          await input.close();
          const output = await client.output();
          assert.deepEqual({
            code: output.code,
            stdout: new TextDecoder().decode(output.stdout),
            stderr: new TextDecoder().decode(output.stderr),
          }, { code: 0, ...expected });
        });
      }
    } finally {
      server.child.kill("SIGTERM");
      await finish(server);
    }
  },
});

Deno.test("readFlagFile() refuses what is not a small regular file, in one line", async () => {
  await assert.rejects(
    () => readFlagFile("client.ts", "--ca", "/dev/zero"),
    (error: Error) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.message, "client.ts: cannot read --ca /dev/zero: not a file");
      return true;
    },
  );
  await assert.rejects(
    () => readFlagFile("server.ts", "--password-file", "/nonexistent/pw"),
    /server\.ts: cannot read --password-file \/nonexistent\/pw: no such file$/,
  );
  assert.match(await readFlagFile("client.ts", "--ca", "deno.json"), /"tasks"/);
});
