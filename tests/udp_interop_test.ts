/**
 * Interop: the UDP scripts against the usual tools on the other side, so the
 * protocol is plain datagrams and nothing Deno-specific. `nc.openbsd` is
 * called by name, as /usr/bin/nc may be ncat; a missing tool fails the test.
 */
import assert from "node:assert/strict";
import { runUdpClient } from "../udp_client.ts";
import { startUdpServer } from "../udp_server.ts";
import { say } from "../protocol.ts";
import { bytes, NEEDS_SPAWN, runProgram, runScript, streamSource } from "./util.ts";
import { freeUdpPort, TestPeer } from "./udp_util.ts";

/** Runs a program (see runProgram) that the test can also stop. */
function spawn(command: string, args: string[]) {
  const program = runProgram(command, args);
  const child = program.child;
  return {
    ...program,
    async stop() {
      try {
        child.kill();
      } catch {
        // Already exited.
      }
      await this.stdin.close().catch(() => {});
      await child.status;
      await Promise.all([this.stdout.rest(), this.stderr.rest()]);
    },
  };
}

Deno.test({
  name: "an nc -u peer joins the UDP chat, talks and is talked to",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = startUdpServer({ host: "127.0.0.1", port: 0, log: () => {} });
    const nc = spawn("nc.openbsd", ["-u", "127.0.0.1", String(server.addr.port)]);
    try {
      using alice = new TestPeer();
      await alice.send(server.addr, "/nick alice\n");
      assert.equal(await alice.next(), say.welcome("alice"));
      await nc.stdin.write(bytes("/nick netcat\n"));
      assert.equal(await nc.stdout.line(), say.welcome("netcat"));
      assert.equal(await alice.next(), say.joined("netcat"));
      await nc.stdin.write(bytes("你好 from nc\n"));
      assert.equal(await alice.next(), "<netcat> 你好 from nc");
      await alice.send(server.addr, "hi netcat\n");
      assert.equal(await nc.stdout.line(), "<alice> hi netcat");
      assert.equal(server.peerCount, 2);
    } finally {
      await nc.stop();
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "socat as a client of the UDP echo server gets its line back",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = startUdpServer({ host: "127.0.0.1", port: 0, mode: "echo", log: () => {} });
    const socat = spawn("socat", ["-", `UDP:127.0.0.1:${server.addr.port}`]);
    try {
      await socat.stdin.write(bytes("你好，socat\n"));
      assert.equal(await socat.stdout.line(), "你好，socat");
    } finally {
      await socat.stop();
      await server.shutdown();
    }
  },
});

const PYTHON_PEER = `
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for payload in [("你好" * 3 + "\\n").encode(), b"x" * 257, b"x" * 65507, b"\\xff\\n"]:
    s.sendto(payload, ("127.0.0.1", port))
    data, addr = s.recvfrom(65535)
    print(repr(data.decode()), flush=True)
`;

Deno.test({
  name: "a Python socket gets the echo of Chinese text and the errors for bad datagrams",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const server = startUdpServer({ host: "127.0.0.1", port: 0, mode: "echo", log: () => {} });
    try {
      const python = spawn("python3", ["-c", PYTHON_PEER, String(server.addr.port)]);
      const output = await python.stdout.rest();
      assert.equal((await python.child.status).code, 0);
      await python.stderr.rest();
      assert.deepEqual(output, [
        "'你好你好你好\\n'",
        "'ERR datagram too large (max 256 bytes)\\n'",
        "'ERR datagram too large (max 256 bytes)\\n'",
        "'ERR invalid UTF-8\\n'",
      ]);
    } finally {
      await server.shutdown();
    }
  },
});

const PYTHON_ECHO_SERVER = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print("listening on 127.0.0.1:%d" % s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
`;

Deno.test({
  name: "udp_client.ts --expect-reply gets every answer from a Python echo server",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const python = spawn("python3", ["-c", PYTHON_ECHO_SERVER]);
    try {
      const port = /:(\d+)$/.exec(await python.stdout.line() ?? "")![1];
      const client = runScript("udp_client.ts", ["--port", port, "--expect-reply"]);
      await client.stdin.write(bytes("一\n二\n三\n"));
      await client.stdin.close();
      const [stdout, stderr, status] = await Promise.all([
        client.stdout.rest(),
        client.stderr.rest(),
        client.child.status,
      ]);
      assert.deepEqual({ code: status.code, stdout, stderr }, {
        code: 0,
        stdout: ["一", "二", "三"],
        stderr: ["sent 3, answered 3, lost 0"],
      });
    } finally {
      await python.stop();
    }
  },
});

Deno.test({
  name: "udp_client.ts talks both ways with an nc -u -l server",
  ignore: NEEDS_SPAWN,
  fn: async () => {
    const port = freeUdpPort();
    const nc = spawn("nc.openbsd", ["-v", "-u", "-l", "127.0.0.1", String(port)]);
    try {
      await nc.stderr.until((line) => line.startsWith("Bound on"));
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const typing = pipe.writable.getWriter();
      const fromNc = Promise.withResolvers<void>();
      const printed: string[] = [];
      const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      const client = runUdpClient(
        socket,
        { server: { transport: "udp", hostname: "127.0.0.1", port }, waitMs: 50 },
        {
          input: streamSource(pipe.readable),
          print: (line) => {
            printed.push(line);
            fromNc.resolve();
          },
          status: () => {},
        },
      );
      await typing.write(bytes("你好 nc\n"));
      assert.equal(await nc.stdout.line(), "你好 nc");
      await nc.stdin.write(bytes("hello back\n"));
      await fromNc.promise;
      await typing.close();
      assert.equal(await client, 0);
      assert.deepEqual(printed, ["hello back"]);
    } finally {
      await nc.stop();
    }
  },
});
