/**
 * TLS (issue 13): server.ts --tls-cert/--tls-key, client.ts --tls/--ca/--servername
 * and `deno task cert`, with real peers on loopback: the scripts as processes,
 * the server in-process where a test needs its log or a short handshake
 * timeout, and openssl s_client/s_server, socat, ncat and Python's ssl module
 * on the other side.
 *
 * Certificates are made for each test in a folder from `mktemp -d` (the suite
 * has no --allow-write: openssl writes the files) and removed with `rm -rf`.
 * A missing tool fails the test rather than skipping it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { say } from "../protocol.ts";
import { writeAll } from "../line_buffer.ts";
import {
  bytes,
  finish,
  join,
  LineReader,
  NEEDS_SPAWN,
  ROOT,
  runProgram,
  runScript,
  type Script,
  TestServer,
  within,
} from "./util.ts";

/** Every wait here is for something broken code would never do: it fails after this. */
const WAIT_MS = 10_000;

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: NEEDS_SPAWN, fn });

// ---- certificates in a temporary folder

/** A folder from `mktemp -d`, removed with `rm -rf` when disposed. */
interface TempDir extends AsyncDisposable {
  path: string;
  /** A file in the folder, by its absolute path. */
  file(name: string): string;
}

/** Runs a program to its end; fails, with its stderr, unless it exits 0. */
async function run(program: string, args: string[], cwd = ROOT): Promise<string> {
  const output = await within(
    WAIT_MS,
    `${program} ${args.join(" ")}`,
    new Deno.Command(program, {
      args,
      cwd,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    })
      .output(),
  );
  const decoder = new TextDecoder();
  assert.equal(output.code, 0, `${program} ${args.join(" ")}: ${decoder.decode(output.stderr)}`);
  return decoder.decode(output.stdout);
}

async function tempDir(): Promise<TempDir> {
  const path = (await run("mktemp", ["-d"])).trim();
  return {
    path,
    file: (name) => `${path}/${name}`,
    [Symbol.asyncDispose]: async () => void await run("rm", ["-rf", path]),
  };
}

/** `deno task cert` run in `dir`, as the README tells a user to: cert.pem and key.pem. */
async function taskCert(dir: TempDir): Promise<{ cert: string; key: string }> {
  await run(Deno.execPath(), ["task", "--config", `${ROOT}deno.json`, "--cwd", dir.path, "cert"]);
  return {
    cert: await Deno.readTextFile(dir.file("cert.pem")),
    key: await Deno.readTextFile(dir.file("key.pem")),
  };
}

const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const NOT_CA = ["-addext", "basicConstraints=critical,CA:FALSE"];

/**
 * Self-signed certificates that `deno task cert` would not make, each with
 * one fault, written as NAME_cert.pem and NAME_key.pem.
 */
const FAULTY_CERTS = {
  // openssl req -x509's default extensions (v3_ca) make a CA: basicConstraints CA:TRUE.
  ca: [...P256, "-sha256", "-addext", "subjectAltName=IP:127.0.0.1"],
  // SHA-1 with RSA, which rustls (Deno's verifier) refuses; -sha1 needs an RSA key to mean it.
  sha1: ["-newkey", "rsa:2048", "-sha1", "-addext", "subjectAltName=IP:127.0.0.1", ...NOT_CA],
  // A name but no IP address: not for a client that connects to 127.0.0.1.
  dns: [...P256, "-sha256", "-addext", "subjectAltName=DNS:localhost", ...NOT_CA],
  // A good certificate, for a key that is not its own.
  other: [...P256, "-sha256", "-addext", "subjectAltName=IP:127.0.0.1", ...NOT_CA],
} as const;

async function faultyCert(
  dir: TempDir,
  name: keyof typeof FAULTY_CERTS,
): Promise<{ cert: string; key: string }> {
  await run("openssl", [
    "req",
    "-x509",
    ...FAULTY_CERTS[name],
    "-nodes",
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
    "-keyout",
    dir.file(`${name}_key.pem`),
    "-out",
    dir.file(`${name}_cert.pem`),
  ]);
  return {
    cert: await Deno.readTextFile(dir.file(`${name}_cert.pem`)),
    key: await Deno.readTextFile(dir.file(`${name}_key.pem`)),
  };
}

// ---- processes

/** Processes to kill when the test ends, however it ends. */
class Processes implements AsyncDisposable {
  #scripts: Script[] = [];

  add<T extends Script>(script: T): T {
    this.#scripts.push(script);
    return script;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const script of this.#scripts) {
      try {
        script.child.kill("SIGKILL");
      } catch {
        // It had exited.
      }
      await finish(script);
    }
  }
}

/** The permissions client.ts and server.ts get here: the network, and the certificates' folder. */
function permissions(dir: TempDir): string[] {
  return ["--allow-net", `--allow-read=${dir.path}`];
}

/**
 * server.ts --tls-cert cert.pem --tls-key key.pem on 127.0.0.1 (or `host`),
 * port 0, and the port from its `listening on` line, which must say tls.
 */
async function startTlsScript(
  dir: TempDir,
  args: string[] = [],
  host = "127.0.0.1",
): Promise<Script & { port: number }> {
  const server = runScript("server.ts", [
    "--host",
    host,
    "--port",
    "0",
    "--tls-cert",
    dir.file("cert.pem"),
    "--tls-key",
    dir.file("key.pem"),
    ...args,
  ], { permissions: permissions(dir), serverLog: true });
  const line = await nextLine(server.stdout, "server.ts's listening line");
  const port = /^listening on \S+:(\d+) \(tls, (chat|echo)\)$/.exec(line)?.[1];
  assert.ok(port !== undefined, `server.ts's first log line: ${line}`);
  return { ...server, port: Number(port) };
}

/** client.ts --tls --ca cert.pem, on 127.0.0.1 (or `host`) at `port`. */
function tlsClientScript(dir: TempDir, port: number, args: string[] = [], host = "127.0.0.1") {
  return runScript(
    "client.ts",
    ["--tls", "--ca", dir.file("cert.pem"), "--host", host, "--port", String(port), ...args],
    { permissions: permissions(dir) },
  );
}

/** Stops a server script with SIGTERM and checks it exited 0 with nothing on stderr. */
async function stop(server: Script): Promise<void> {
  server.child.kill("SIGTERM");
  assert.deepEqual(await rest(server.stderr, "the server's stderr"), []);
  assert.equal((await finish(server)).code, 0, "the server's exit code");
}

/** The next line of `reader` that `match` accepts; fails after WAIT_MS or at the end. */
function next(reader: LineReader, what: string, match: (line: string) => boolean): Promise<string> {
  return within(WAIT_MS, what, reader.until(match));
}

/** The next line of `reader`; fails after WAIT_MS, or if the stream ended. */
async function nextLine(reader: LineReader, what: string): Promise<string> {
  const line = await within(WAIT_MS, what, reader.line());
  assert.ok(line !== null, `${what}: the output ended`);
  return line;
}

/** Every line until the end; fails after WAIT_MS. */
function rest(reader: LineReader, what: string): Promise<string[]> {
  return within(WAIT_MS, what, reader.rest());
}

/** A child's exit code; fails after WAIT_MS. */
async function exitOf(script: Script, what: string): Promise<number> {
  await script.stdin.close().catch(() => {});
  return (await within(WAIT_MS, `${what}'s exit`, script.child.status)).code;
}

// ---- TLS clients in-process

/** A TLS client of the test's own (Deno.connectTls, checking the certificate against `cert`). */
class TlsPeer implements Disposable {
  readonly conn: Deno.TlsConn;
  readonly lines: LineReader;

  private constructor(conn: Deno.TlsConn) {
    this.conn = conn;
    this.lines = new LineReader(conn);
  }

  static async connect(port: number, cert: string): Promise<TlsPeer> {
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] });
    await within(WAIT_MS, "the TLS handshake", conn.handshake());
    return new TlsPeer(conn);
  }

  /** Its address as the server logs it. */
  get address(): string {
    return `127.0.0.1:${this.conn.localAddr.port}`;
  }

  send(text: string): Promise<void> {
    return writeAll(this.conn, bytes(text));
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // closed by the test already
    }
  }
}

/** The address client.ts printed on its `connected to SERVER from ADDRESS` line. */
function connectedFrom(line: string): string {
  const address = /^connected to \S+ from (\S+) \(TLS, certificate checked for \S+\)$/.exec(line)
    ?.[1];
  assert.ok(address !== undefined, `client.ts's first line: ${line}`);
  return address;
}

// ---- 1. deno task cert, and the scripts over TLS

test("deno task cert makes a certificate client.ts --tls --ca accepts for 127.0.0.1, ::1 and localhost: echo over TLS", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  // What Deno's verifier (rustls, webpki) asks of a server's certificate.
  const text = await run("openssl", ["x509", "-in", dir.file("cert.pem"), "-noout", "-text"]);
  for (
    const needed of [
      "CA:FALSE",
      "Signature Algorithm: ecdsa-with-SHA256",
      "IP Address:127.0.0.1",
      "IP Address:0:0:0:0:0:0:0:1",
      "DNS:localhost",
    ]
  ) {
    assert.ok(text.includes(needed), `the certificate has ${needed}`);
  }

  await using processes = new Processes();
  const v4 = processes.add(await startTlsScript(dir, ["--mode", "echo"]));
  const v6 = processes.add(await startTlsScript(dir, ["--mode", "echo"], "::1"));
  // localhost is 127.0.0.1 here (/etc/hosts; Deno.connect takes the first address).
  const names = [["127.0.0.1", v4.port], ["::1", v6.port], ["localhost", v4.port]] as const;
  const clients = names.map(([host, port]) => processes.add(tlsClientScript(dir, port, [], host)));
  await Promise.all(clients.map(async (client, i) => {
    const [host] = names[i];
    const connected = await nextLine(client.stderr, `client.ts --host ${host}`);
    assert.match(
      connected,
      new RegExp(`\\(TLS, certificate checked for ${RegExp.escape(host)}\\)$`),
    );
    const line = `你好 over TLS to ${host} 🔒👨‍👩‍👧‍👦`;
    await client.stdin.write(bytes(line + "\n"));
    assert.equal(await nextLine(client.stdout, `the echo to ${host}`), line);
    assert.equal(await exitOf(client, `client.ts --host ${host}`), 0);
    assert.deepEqual(await rest(client.stderr, `client.ts --host ${host}'s stderr`), []);
  }));
  await stop(v4);
  await stop(v6);
});

test("two client.ts --tls chat through server.ts --tls-cert: a line from one reaches the other", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  const server = processes.add(await startTlsScript(dir));
  const alice = processes.add(tlsClientScript(dir, server.port, ["--name", "alice"]));
  await next(alice.stdout, "alice's name", (line) => line === "* user1 is now alice");
  const bob = processes.add(tlsClientScript(dir, server.port, ["--name", "bob"]));
  await next(alice.stdout, "bob's name", (line) => line === "* user2 is now bob");
  await alice.stdin.write(bytes("你好，bob：这是加密的 🔐\n"));
  assert.equal(
    await next(bob.stdout, "alice's line", (line) => line.startsWith("<")),
    "<alice> 你好，bob：这是加密的 🔐",
  );
  await bob.stdin.write(bytes("e\u0301 👋🏽 received\n"));
  assert.equal(
    await next(alice.stdout, "bob's line", (line) => line.startsWith("<")),
    "<bob> e\u0301 👋🏽 received",
  );
  assert.equal(await exitOf(alice, "alice"), 0);
  assert.equal(await exitOf(bob, "bob"), 0);
  await stop(server);
});

// ---- 2. certificate problems: one line each, exit 1, never "connected"

test("client.ts --tls says in one line what is wrong with the server's certificate, exit 1, and never prints connected", async () => {
  await using dir = await tempDir();
  const good = await taskCert(dir);
  const cases: {
    what: string;
    server: () => Promise<TestServer>;
    args: (port: number) => string[];
    says: string;
    logged: RegExp;
  }[] = [
    {
      what: "no --ca",
      server: () => TestServer.tls({ tls: good }),
      args: () => [],
      says: "the server's certificate is not signed by a CA this client trusts",
      logged: /\(TLS handshake failed: /,
    },
    {
      what: "--servername example.com",
      server: () => TestServer.tls({ tls: good }),
      args: () => ["--ca", dir.file("cert.pem"), "--servername", "example.com"],
      says:
        "the server's certificate is not for example.com (it is for localhost, 127.0.0.1 or ::1)",
      logged: /\(TLS handshake failed: /,
    },
    ...(["ca", "sha1", "dns"] as const).map((name) => ({
      what: `the ${name} certificate`,
      server: async () => TestServer.tls({ tls: await faultyCert(dir, name) }),
      args: () => ["--ca", dir.file(`${name}_cert.pem`)],
      says: {
        ca: "the server's certificate is a CA certificate (CA:TRUE)",
        sha1: "the server's certificate is signed with an algorithm this client refuses (SHA-1?)",
        dns: "the server's certificate is not for 127.0.0.1 (it is for localhost)",
      }[name],
      logged: /\(TLS handshake failed: /,
    })),
    {
      what: "a plain server",
      server: () => Promise.resolve(new TestServer()),
      args: () => ["--ca", dir.file("cert.pem")],
      says: "the server did not answer in TLS (a plain port? connect without --tls)",
      logged: /\(TLS on the plain port\)$/,
    },
  ];
  await using processes = new Processes();
  await Promise.all(cases.map(async ({ what, server: start, args, says, logged }) => {
    await using server = await start();
    const client = processes.add(
      runScript(
        "client.ts",
        ["--tls", "--port", String(server.port), ...args(server.port)],
        { permissions: permissions(dir) },
      ),
    );
    await client.stdin.write(bytes("never sent\n"));
    const stderr = await rest(client.stderr, `client.ts with ${what}`);
    const prefix = `client.ts: TLS handshake with 127.0.0.1:${server.port} failed: `;
    assert.equal(stderr.length, 1, `${what}: ${JSON.stringify(stderr)}`);
    assert.ok(stderr[0].startsWith(prefix + says), `${what}: ${stderr[0]}`);
    assert.deepEqual(await rest(client.stdout, `client.ts's stdout with ${what}`), []);
    assert.equal(await exitOf(client, `client.ts with ${what}`), 1, what);
    await within(
      WAIT_MS,
      `the server's log with ${what}`,
      server.waitLog((line) => logged.test(line)),
    );
    assert.ok(!server.logs.some((line) => line.includes("never sent")), `${what}: nothing relayed`);
  }));
});

// ---- 3. half-close over TLS

test("client.ts --tls: end of input sends close_notify, the server logs (eof), and every echo still arrives", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ mode: "echo", tls });
  await using processes = new Processes();
  const client = processes.add(tlsClientScript(dir, server.port));
  const address = connectedFrom(await nextLine(client.stderr, "client.ts's connected line"));
  // More than one TLS record and more than one read: most echoes are on their
  // way back after the client has sent its close_notify.
  const lines = Array.from({ length: 2000 }, (_, i) => `${i} 第${i}行 ${"😀".repeat(i % 7)}`);
  await client.stdin.write(bytes(lines.join("\n") + "\n"));
  await client.stdin.close();
  assert.deepEqual(await rest(client.stdout, "the echoes"), lines);
  assert.equal(await exitOf(client, "client.ts"), 0);
  assert.deepEqual(await rest(client.stderr, "client.ts's stderr"), []);
  await within(
    WAIT_MS,
    "the server's (eof)",
    server.waitLog((line) => line === `closed ${address} id=1 user1 (eof)`),
  );
});

test("client.ts --tls sending /quit gets * bye before the server's close_notify, and exits 0", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ tls });
  await using processes = new Processes();
  const client = processes.add(tlsClientScript(dir, server.port));
  const address = connectedFrom(await nextLine(client.stderr, "client.ts's connected line"));
  await client.stdin.write(bytes("/quit\n")); // stdin stays open: /quit alone ends the session
  assert.deepEqual(await rest(client.stdout, "client.ts's output"), [
    "* welcome, you are user1 (type /help for commands)",
    say.bye,
  ]);
  assert.equal(
    await within(WAIT_MS, "client.ts's exit", client.child.status).then((s) => s.code),
    0,
  );
  assert.deepEqual(await rest(client.stderr, "client.ts's stderr"), []);
  await within(
    WAIT_MS,
    "the server's (quit)",
    server.waitLog((line) => line === `closed ${address} id=1 user1 (quit)`),
  );
});

/**
 * A Python TLS client that verifies the certificate, sends two lines, then a
 * FIN on the TCP socket without close_notify (a shutdown on a duplicate of
 * its descriptor: Python's ssl never saw it), and prints what it still
 * receives over TLS until the server's close_notify.
 */
const PYTHON_FIN_WITHOUT_CLOSE_NOTIFY = `
import os, socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
tcp = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
# A FIN without close_notify from the server would raise SSLEOFError.
s = context.wrap_socket(tcp, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
s.sendall("第一行\\nsecond\\n".encode())
raw = socket.socket(fileno=os.dup(s.fileno()))
raw.shutdown(socket.SHUT_WR)
raw.close()
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
print("EOF")
s.close()  # without unwrap(): no close_notify from this side, ever
`;

test("a Python ssl client's FIN without close_notify is an ordinary (eof); the echoes still reach it, then the server's close_notify", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ mode: "echo", tls });
  await using processes = new Processes();
  const python = processes.add(
    runProgram("python3", [
      "-c",
      PYTHON_FIN_WITHOUT_CLOSE_NOTIFY,
      String(server.port),
      dir.file("cert.pem"),
    ]),
  );
  assert.deepEqual(await rest(python.stdout, "python's output"), ["第一行", "second", "EOF"]);
  assert.equal(await exitOf(python, "python"), 0);
  const closed = await within(
    WAIT_MS,
    "the server's closed line",
    server.waitLog((line) => line.startsWith("closed ")),
  );
  assert.match(closed, /^closed 127\.0\.0\.1:\d+ id=1 user1 \(eof\)$/);
});

/**
 * A Python TLS client that closes first with close_notify and waits for the
 * server's (unwrap(): OpenSSL's SSL_shutdown, both steps).
 */
const PYTHON_UNWRAP = `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
tcp = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s = context.wrap_socket(tcp, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
s.unwrap()  # raises SSLEOFError if the server answers with a bare FIN
print("close_notify both ways")
`;

test("a Python ssl client's close_notify is the server's (eof), answered with the server's close_notify", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ mode: "echo", tls });
  await using processes = new Processes();
  const python = processes.add(
    runProgram("python3", ["-c", PYTHON_UNWRAP, String(server.port), dir.file("cert.pem")]),
  );
  assert.deepEqual(await rest(python.stdout, "python's output"), ["close_notify both ways"]);
  assert.equal(await exitOf(python, "python"), 0);
  const closed = await within(
    WAIT_MS,
    "the server's closed line",
    server.waitLog((line) => line.startsWith("closed ")),
  );
  assert.match(closed, /^closed 127\.0\.0\.1:\d+ id=1 user1 \(eof\)$/);
});

// ---- 4. stalled handshakes

test("a stalled TLS handshake takes a slot until the handshake timeout, is closed and logged; then a TLS client is served", async () => {
  await using dir = await tempDir();
  const { cert, key } = await taskCert(dir);
  await using server = await TestServer.tls({
    maxClients: 1,
    tls: { cert, key, handshakeTimeoutMs: 300 },
  });
  using stall = await server.connect(); // TCP's handshake, then nothing: no ClientHello
  const stalledAt = performance.now();
  const stallAddress = `127.0.0.1:${stall.conn.localAddr.port}`;

  // While it stalls, the one slot is taken: a TLS client is closed before its handshake.
  const late = await Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [cert] });
  const lateAddress = `127.0.0.1:${late.localAddr.port}`;
  await assert.rejects(within(WAIT_MS, "the late client's handshake", late.handshake()));
  try {
    late.close();
  } catch {
    // closed with its failed handshake
  }
  const full = await within(
    WAIT_MS,
    "the server-full line",
    server.waitLog((line) => line.startsWith(`closed ${lateAddress} `)),
  );
  assert.equal(full, `closed ${lateAddress} (server full, before the TLS handshake)`);

  // The timeout: the server closes the stalled connection, having sent it nothing.
  assert.equal(await within(WAIT_MS, "the stalled connection's end", stall.line()), null);
  assert.equal(stall.lines.tail, "");
  const stalledFor = performance.now() - stalledAt;
  assert.ok(stalledFor >= 290, `closed after ${stalledFor} ms, before the 300 ms timeout`);
  const timedOut = await within(
    WAIT_MS,
    "the timeout line",
    server.waitLog((line) => line.startsWith(`closed ${stallAddress} `)),
  );
  assert.equal(timedOut, `closed ${stallAddress} (TLS handshake timed out)`);
  assert.ok(server.logs.indexOf(full) < server.logs.indexOf(timedOut), "full during the stall");

  // Its slot is free again.
  using served = await TlsPeer.connect(server.port, cert);
  assert.match(await nextLine(served.lines, "the welcome"), /^\* welcome, you are user1 /);
});

test("client.ts --tls turned away by a full TLS server before the handshake says so in one line, exit 1", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ maxClients: 1, tls });
  // The slot is held by a client (a stalled handshake holds it the same way,
  // as the test above shows; a 300 ms stall is too short to spawn a script in).
  using member = await TlsPeer.connect(server.port, tls.cert);
  assert.match(await nextLine(member.lines, "the welcome"), /^\* welcome, you are user1 /);
  await using processes = new Processes();
  const client = processes.add(tlsClientScript(dir, server.port));
  assert.deepEqual(await rest(client.stderr, "client.ts's stderr"), [
    `client.ts: TLS handshake with 127.0.0.1:${server.port} failed: ` +
    "the server closed the connection during the handshake (is it full?)",
  ]);
  assert.equal(await exitOf(client, "client.ts"), 1);
  await within(
    WAIT_MS,
    "the server-full line",
    server.waitLog((line) => /^closed \S+ \(server full, before the TLS handshake\)$/.test(line)),
  );
  // The member is still served.
  await member.send("/list\n");
  assert.match(await nextLine(member.lines, "/list"), /^\* id=1 name=user1 /);
});

// ---- 5. the wrong protocol on each port

test("a plain client on the TLS port gets a TLS alert, is logged as not a TLS client, and the server goes on", async () => {
  await using dir = await tempDir();
  const tls = await taskCert(dir);
  await using server = await TestServer.tls({ tls });
  using plain = await server.connect();
  await plain.send("hello, plain text\n");
  const reply: number[] = [];
  const buffer = new Uint8Array(1024);
  await within(
    WAIT_MS,
    "the alert and the close",
    (async () => {
      for (let n = await plain.conn.read(buffer); n !== null; n = await plain.conn.read(buffer)) {
        reply.push(...buffer.subarray(0, n));
      }
    })(),
  );
  // An alert record (content type 21), TLS 1.x (RFC 8446, 5.1): not chat text.
  assert.deepEqual(reply.slice(0, 2), [0x15, 0x03], `reply: ${reply}`);
  await within(
    WAIT_MS,
    "the log line",
    server.waitLog((line) =>
      line ===
        `closed 127.0.0.1:${plain.conn.localAddr.port} (not a TLS client: plain text on the TLS port)`
    ),
  );
  using next = await TlsPeer.connect(server.port, tls.cert);
  assert.match(await nextLine(next.lines, "the welcome"), /^\* welcome, you are user1 /);
});

/** The bytes a real TLS client (Deno's) sends first: its ClientHello. */
async function clientHello(): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connecting = Deno.connectTls({ hostname: "127.0.0.1", port: listener.addr.port });
  using accepted = await listener.accept();
  const tlsClient = await connecting;
  const handshake = tlsClient.handshake().catch(() => {}); // it sends its ClientHello, and fails
  const buffer = new Uint8Array(64 * 1024);
  const n = await within(WAIT_MS, "the ClientHello", accepted.read(buffer));
  accepted.close();
  await handshake;
  tlsClient.close();
  return buffer.slice(0, n ?? 0);
}

test("a TLS ClientHello on the plain port is answered in plain text and closed; the room sees none of it", async () => {
  await using server = new TestServer();
  using member = await join(server);

  // Deno's own ClientHello, sent over plain TCP so the answer can be read as text.
  const hello = await clientHello();
  using tlsClient = await server.connect();
  await tlsClient.send(hello);
  const answer = await rest(tlsClient.lines, "the answer");
  assert.match(answer[0], /^\* welcome, you are user2 /);
  assert.deepEqual(answer.slice(1), [say.notTls]);
  assert.ok(say.notTls.startsWith("ERR this port speaks plain text, not TLS"));
  assert.equal(tlsClient.lines.tail, "");

  // A real TLS client: openssl s_client gives up on the plain answer.
  await using processes = new Processes();
  const sClient = processes.add(
    runProgram("openssl", ["s_client", "-connect", `127.0.0.1:${server.port}`]),
  );
  assert.equal(await exitOf(sClient, "openssl s_client"), 1);

  // The room saw two members come and go, and no line from either.
  const seen: string[] = [];
  while (seen.filter((line) => / left /.test(line)).length < 2) {
    seen.push(await nextLine(member.lines, "the room"));
  }
  assert.deepEqual(seen, [
    "* user2 joined",
    "* user2 left (TLS on the plain port)",
    "* user3 joined",
    "* user3 left (TLS on the plain port)",
  ]);
  assert.equal(
    server.logs.filter((line) => line.endsWith("(TLS on the plain port)")).length,
    2,
  );
  assert.ok(!server.logs.some((line) => line.startsWith("<")), "nothing relayed");
});

// ---- 6. interop: the tools users have

/** A TLS member of the test's own in the room at `port`, welcomed as user1. */
async function firstMember(dir: TempDir, port: number): Promise<TlsPeer> {
  const member = await TlsPeer.connect(port, await Deno.readTextFile(dir.file("cert.pem")));
  assert.match(await nextLine(member.lines, "the member's welcome"), /^\* welcome, you are user1 /);
  return member;
}

/**
 * The chat every peer below goes through: it names itself `name`, says
 * `line` (the member sees it), hears the member, and quits.
 */
async function chat(peer: Script, member: TlsPeer, name: string): Promise<void> {
  const line = `你好 from ${name} 👋🏽`;
  await peer.stdin.write(bytes(`/nick ${name}\n${line}\n`));
  assert.equal(
    await next(member.lines, `${name}'s line`, (l) => l.startsWith("<")),
    `<${name}> ${line}`,
  );
  await member.send("heard you\n");
  assert.equal(
    await next(peer.stdout, `the member's line at ${name}`, (l) => l.startsWith("<")),
    "<user1> heard you",
  );
}

test("openssl s_client, verifying the certificate and its IP address, chats through server.ts --tls-cert", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  const server = processes.add(await startTlsScript(dir));
  using member = await firstMember(dir, server.port);
  // -quiet: no command letters, and end of input does not close; /quit does.
  const sClient = processes.add(runProgram("openssl", [
    "s_client",
    "-quiet",
    "-verify_return_error",
    "-CAfile",
    dir.file("cert.pem"),
    "-verify_ip",
    "127.0.0.1",
    "-connect",
    `127.0.0.1:${server.port}`,
  ]));
  await chat(sClient, member, "sam");
  await sClient.stdin.write(bytes("/quit\n"));
  assert.equal(await next(sClient.stdout, "s_client's bye", (l) => l === say.bye), say.bye);
  assert.equal(await exitOf(sClient, "s_client"), 0);
  const stderr = await rest(sClient.stderr, "s_client's stderr");
  assert.ok(stderr.includes("verify return:1"), `verified: ${stderr}`);
  await next(server.stdout, "the server's log", (l) => /^closed \S+ id=2 sam \(quit\)$/.test(l));
  member[Symbol.dispose]();
  await stop(server);
});

test("socat OPENSSL:, verifying with cafile=, chats through server.ts --tls-cert and closes with close_notify", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  const server = processes.add(await startTlsScript(dir));
  using member = await firstMember(dir, server.port);
  // socat 1.7.4 also checks the certificate's name: IP:127.0.0.1 here.
  const socat = processes.add(
    runProgram("socat", [
      "-t",
      "5",
      "-",
      `OPENSSL:127.0.0.1:${server.port},cafile=${dir.file("cert.pem")}`,
    ]),
  );
  await chat(socat, member, "sue");
  // End of input: socat sends close_notify and its FIN, the server closes, socat exits.
  assert.equal(await exitOf(socat, "socat"), 0);
  await next(server.stdout, "the server's log", (l) => /^closed \S+ id=2 sue \(eof\)$/.test(l));
  member[Symbol.dispose]();
  await stop(server);
});

test("ncat --ssl (no verification: it cannot check IP addresses) chats through server.ts --tls-cert; its end is an ordinary (eof)", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  const server = processes.add(await startTlsScript(dir));
  using member = await firstMember(dir, server.port);
  // ncat 7.93 never sends close_notify: at the end of its input it sends a
  // bare FIN (seen by a Python ssl server with suppress_ragged_eofs=False,
  // where client.ts and socat send close_notify), which the server takes as
  // the end of input like any other.
  const ncat = processes.add(runProgram("ncat", ["--ssl", "127.0.0.1", String(server.port)]));
  await chat(ncat, member, "nat");
  assert.equal(await exitOf(ncat, "ncat"), 0);
  await next(server.stdout, "the server's log", (l) => /^closed \S+ id=2 nat \(eof\)$/.test(l));
  assert.equal(
    await next(member.lines, "nat's leaving", (l) => l.startsWith("* nat ")),
    "* nat left (eof)",
  );
  member[Symbol.dispose]();
  await stop(server);
});

// ncat as a TLS server (ncat --ssl -l) is left out: it drops what it is still
// sending once it receives close_notify, so client.ts's half-close (close_notify,
// then read the rest) loses the end of ncat's output.

test("client.ts --tls and openssl s_server exchange a line each way, then close", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  // Not -quiet: s_server prints its address (ACCEPT 127.0.0.1:PORT) only then.
  const sServer = processes.add(runProgram("openssl", [
    "s_server",
    "-accept",
    "127.0.0.1:0",
    "-cert",
    dir.file("cert.pem"),
    "-key",
    dir.file("key.pem"),
    "-naccept",
    "1",
  ]));
  const accept = await next(sServer.stdout, "s_server's address", (l) => l.startsWith("ACCEPT "));
  const port = Number(/^ACCEPT 127\.0\.0\.1:(\d+)$/.exec(accept)?.[1]);
  const client = processes.add(tlsClientScript(dir, port));
  connectedFrom(await nextLine(client.stderr, "client.ts's connected line"));
  await client.stdin.write(bytes("你好 s_server\n"));
  await next(sServer.stdout, "client.ts's line", (l) => l === "你好 s_server");
  // A line that begins with no s_server command letter.
  await sServer.stdin.write(bytes("你好 client.ts\n"));
  assert.equal(await nextLine(client.stdout, "s_server's line"), "你好 client.ts");
  // client.ts's close_notify; s_server answers with its own and closes.
  assert.equal(await exitOf(client, "client.ts"), 0);
  assert.deepEqual(await rest(client.stderr, "client.ts's stderr"), []);
  assert.equal(await exitOf(sServer, "s_server"), 0);
});

test("client.ts --tls and socat OPENSSL-LISTEN: exchange a line each way, then close", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await using processes = new Processes();
  const socat = processes.add(runProgram("socat", [
    "-d",
    "-d",
    `OPENSSL-LISTEN:0,bind=127.0.0.1,cert=${dir.file("cert.pem")},key=${
      dir.file("key.pem")
    },verify=0`,
    "-",
  ]));
  const listening = await next(
    socat.stderr,
    "socat's address",
    (l) => l.includes(" listening on "),
  );
  const port = Number(/ listening on AF=2 127\.0\.0\.1:(\d+)$/.exec(listening)?.[1]);
  const client = processes.add(tlsClientScript(dir, port));
  connectedFrom(await nextLine(client.stderr, "client.ts's connected line"));
  await client.stdin.write(bytes("你好 socat\n"));
  assert.equal(await nextLine(socat.stdout, "client.ts's line"), "你好 socat");
  await socat.stdin.write(bytes("你好 client.ts\n"));
  assert.equal(await nextLine(client.stdout, "socat's line"), "你好 client.ts");
  assert.equal(await exitOf(client, "client.ts"), 0);
  assert.deepEqual(await rest(client.stderr, "client.ts's stderr"), []);
  assert.equal(await exitOf(socat, "socat"), 0);
});

// ---- 7. server.ts's TLS flags

/** server.ts run to its end: its exit code and its stderr's lines. */
async function serverFails(
  args: string[],
  permissions: string[],
): Promise<{ code: number; stderr: string[] }> {
  const server = runScript("server.ts", ["--port", "0", "--no-console", ...args], { permissions });
  try {
    const stderr = await rest(server.stderr, "server.ts's stderr");
    return { code: await exitOf(server, "server.ts"), stderr };
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch {
      // It had exited.
    }
    await finish(server);
  }
}

test("server.ts --tls-cert without --tls-key is a usage error: one line, exit 2", async () => {
  for (const args of [["--tls-cert", "cert.pem"], ["--tls-key", "key.pem"]]) {
    const { code, stderr } = await serverFails(args, ["--allow-net", "--allow-read"]);
    assert.deepEqual(stderr, [
      "server.ts: --tls-cert and --tls-key go together: give both, or neither (see --help)",
    ]);
    assert.equal(code, 2);
  }
});

test("server.ts --tls-cert without read permission names the --allow-read it needs: one line, exit 1", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  const cert = dir.file("cert.pem");
  const { code, stderr } = await serverFails(
    ["--tls-cert", cert, "--tls-key", dir.file("key.pem")],
    ["--allow-net"],
  );
  assert.equal(stderr.length, 1, JSON.stringify(stderr));
  assert.ok(stderr[0].startsWith(`server.ts: cannot read --tls-cert ${cert}: `), stderr[0]);
  // The grant that covers both files, so the next run does not fail on the key.
  assert.ok(stderr[0].endsWith(`--allow-read=${cert},${dir.file("key.pem")}`), stderr[0]);
  assert.equal(code, 1);
});

test("server.ts with a file that is not a PEM certificate or key, or a key of another certificate: one line, exit 1", async () => {
  await using dir = await tempDir();
  await taskCert(dir);
  await faultyCert(dir, "other");
  const [cert, key] = [dir.file("cert.pem"), dir.file("key.pem")];
  const notPem = "no PEM certificate in the --tls-cert file";
  const cases = [
    { what: "deno.json as the certificate", files: [`${ROOT}deno.json`, key], says: notPem },
    { what: "the key as the certificate", files: [key, key], says: notPem },
    { what: "the certificate as the key", files: [cert, cert], says: "no PEM private key in the" },
    {
      what: "another certificate's key",
      files: [cert, dir.file("other_key.pem")],
      says: "the key is not the certificate's",
    },
  ];
  for (const { what, files: [certFile, keyFile], says } of cases) {
    const { code, stderr } = await serverFails(
      ["--tls-cert", certFile, "--tls-key", keyFile],
      ["--allow-net", "--allow-read"],
    );
    assert.equal(stderr.length, 1, `${what}: ${JSON.stringify(stderr)}`);
    assert.ok(
      stderr[0].startsWith(`server.ts: cannot use --tls-cert/--tls-key: ${says}`),
      stderr[0],
    );
    assert.equal(code, 1, what);
  }
});

test("server.ts runs with only --allow-net and --allow-read=cert.pem,key.pem and serves TLS", async () => {
  await using dir = await tempDir();
  const { cert } = await taskCert(dir);
  await using processes = new Processes();
  // The issue's command line, in the certificates' folder.
  const server = processes.add(runScript(
    `${ROOT}server.ts`,
    ["--port", "0", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    {
      permissions: ["--allow-net", "--allow-read=cert.pem,key.pem"],
      serverLog: true,
      cwd: dir.path,
    },
  ));
  const line = await nextLine(server.stdout, "the listening line");
  const port = Number(/^listening on 127\.0\.0\.1:(\d+) \(tls, chat\)$/.exec(line)?.[1]);
  assert.ok(port > 0, line);
  using client = await TlsPeer.connect(port, cert);
  assert.match(await nextLine(client.lines, "the welcome"), /^\* welcome, you are user1 /);
  await client.send("/quit\n");
  assert.equal(await nextLine(client.lines, "the bye"), say.bye);
  client[Symbol.dispose]();
  await stop(server);
});
