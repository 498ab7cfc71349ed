/**
 * The README's `deno install --global` commands: the four scripts become
 * `netchat-server`, `netchat-client`, `netchat-udp-server` and
 * `netchat-udp-client` in a temporary `--root`, installed offline (in a
 * network namespace of their own), and each installed command runs: `--help`,
 * then one real exchange over TCP and one over UDP on the loopback.
 *
 * The suite runs without --allow-write, so the temporary root is made by
 * `mktemp -d` and removed by `rm -rf`; the deno cache is the default one.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { LineReader, NEEDS_SPAWN, ROOT, streamSource, within } from "./util.ts";

/** The installed commands and the scripts they run. */
const COMMANDS = [
  { name: "netchat-server", script: "server.ts" },
  { name: "netchat-client", script: "client.ts" },
  { name: "netchat-udp-server", script: "udp_server.ts" },
  { name: "netchat-udp-client", script: "udp_client.ts" },
];

/**
 * The README's install command for one script, run from the clone.
 * `--config deno.json` carries the project's `"unstable": ["net"]` (for
 * Deno.listenDatagram) into the installed command: without it, `deno install`
 * ignores the deno.json it finds, and the UDP scripts fail.
 */
function installArgs(root: string, name: string, script: string): string[] {
  return [
    "install",
    "--global",
    "--root",
    root,
    "--name",
    name,
    "--allow-net",
    "--config",
    "deno.json",
    `./${script}`,
  ];
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Runs `program` to its end with `input` on stdin, in the project folder
 * unless told otherwise; a hang fails after 60 s.
 */
async function run(
  program: string,
  args: string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(program, {
    args,
    cwd: options.cwd ?? ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const stdin = child.stdin.getWriter();
  if (options.input !== undefined) await stdin.write(encoder.encode(options.input));
  await stdin.close();
  const output = await child.output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Runs `command` without a network: in a new network namespace whose only
 * interface is the loopback, down (`unshare -rn`). Fails if unshare cannot.
 */
function offline(command: string[]): [string, string[]] {
  const shell = [
    "set -e",
    `test "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')" = lo ||` +
    ` { echo "not in a fresh network namespace: refusing to run" >&2; exit 97; }`,
    'exec "$@"',
  ].join("\n");
  return ["unshare", ["-rn", "sh", "-c", shell, "sh", ...command]];
}

// A server's log line may begin with an ISO 8601 time.
const LISTENING =
  /^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z )?listening on 127\.0\.0\.1:(\d+) /;

/** An installed server, running, and the reader of its log. */
interface Running {
  child: Deno.ChildProcess;
  log: LineReader;
}

/**
 * Starts an installed server as echo service on a free loopback port, from
 * `cwd`; resolves with the port it logged.
 */
async function startInstalled(
  name: string,
  env: Record<string, string>,
  cwd: string,
): Promise<{ server: Running; port: number }> {
  const child = new Deno.Command(name, {
    args: ["--port", "0", "--mode", "echo"],
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdin: "null", // the server goes on serving without a console
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const log = new LineReader(streamSource(child.stdout));
  const line = await within(
    60_000,
    `${name}'s listening line`,
    log.until((line) => LISTENING.test(line)),
  );
  return { server: { child, log }, port: Number(LISTENING.exec(line)![1]) };
}

/** Stops a server with SIGTERM (a graceful shutdown) and checks it exited 0. */
async function stop(name: string, server: Running): Promise<void> {
  server.child.kill("SIGTERM");
  const [status] = await Promise.all([server.child.status, server.log.rest()]);
  assert.equal(status.code, 0, `${name} exit code after SIGTERM`);
}

Deno.test({
  name: "deno install --global makes the four netchat commands, which run offline and talk",
  ignore: NEEDS_SPAWN,
  async fn(t) {
    const made = await run("mktemp", ["-d", "-t", "netchat-install.XXXXXXXX"]);
    assert.equal(made.code, 0, made.stderr);
    const root = made.stdout.trim();
    assert.match(root, /netchat-install\.\w{8}$/);
    // The installed commands on PATH, and the deno that runs these tests for
    // them to call; they run from the root, away from the clone.
    const env = {
      PATH: [join(root, "bin"), dirname(Deno.execPath()), Deno.env.get("PATH")].join(":"),
    };
    try {
      await t.step("each script installs without a network", async () => {
        for (const { name, script } of COMMANDS) {
          const [program, args] = offline([
            Deno.execPath(),
            ...installArgs(root, name, script),
          ]);
          const result = await run(program, args);
          assert.doesNotMatch(result.stderr, /^unshare: /m, "unshare -rn must work here");
          assert.equal(result.code, 0, result.stderr);
          // The command runs the script in this clone, with the network granted
          // and the project's deno.json (a copy, with "unstable": ["net"]).
          const shim = await Deno.readTextFile(join(root, "bin", name));
          assert.match(shim, /^exec deno run --allow-net --config (\S+) '([^']+)' "\$@"$/m);
          const [, config, url] = /--config (\S+) '([^']+)'/.exec(shim)!;
          assert.equal(url, new URL(`../${script}`, import.meta.url).href);
          assert.deepEqual(JSON.parse(await Deno.readTextFile(config)).unstable, ["net"]);
          // Installing is silent about the config it found: --config is the one to use.
          assert.doesNotMatch(result.stderr, /config file will be ignored/);
        }
      });

      await t.step("each installed command prints its help and exits 0", async () => {
        for (const { name, script } of COMMANDS) {
          const result = await run(name, ["--help"], { env, cwd: root });
          assert.equal(result.code, 0, result.stderr);
          assert.equal(result.stderr, "", `${name} --help wrote on stderr`);
          assert.match(result.stdout, new RegExp(`^Usage: .*\\b${script.replace(".", "\\.")}\\b`));
        }
      });

      await t.step("netchat-client exchanges a line with netchat-server over TCP", async () => {
        const { server, port } = await startInstalled("netchat-server", env, root);
        try {
          const result = await run(
            "netchat-client",
            ["--port", String(port)],
            { env, input: "你好，世界\n", cwd: root },
          );
          assert.equal(result.code, 0, result.stderr);
          assert.equal(result.stdout, "你好，世界\n");
          assert.match(result.stderr, new RegExp(`^connected to 127\\.0\\.0\\.1:${port} from `));
        } finally {
          await stop("netchat-server", server);
        }
      });

      // The UDP scripts need the net unstable flag: this fails if --config did not carry it.
      await t.step("netchat-udp-client exchanges a datagram with netchat-udp-server", async () => {
        const { server, port } = await startInstalled("netchat-udp-server", env, root);
        try {
          const result = await run(
            "netchat-udp-client",
            ["--port", String(port), "--expect-reply"],
            { env, input: "你好，世界\n", cwd: root },
          );
          assert.equal(result.code, 0, result.stderr);
          assert.equal(result.stdout, "你好，世界\n");
          assert.equal(result.stderr, "sent 1, answered 1, lost 0\n");
        } finally {
          await stop("netchat-udp-server", server);
        }
      });

      await t.step("deno uninstall --global removes each command", async () => {
        for (const { name } of COMMANDS) {
          const result = await run(
            Deno.execPath(),
            ["uninstall", "--global", "--root", root, name],
          );
          assert.equal(result.code, 0, result.stderr);
          await assert.rejects(Deno.stat(join(root, "bin", name)), Deno.errors.NotFound);
        }
      });
    } finally {
      const removed = await run("rm", ["-rf", "--", root]);
      assert.equal(removed.code, 0, removed.stderr);
    }
  },
});
