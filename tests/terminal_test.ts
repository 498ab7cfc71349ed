/**
 * The client in a terminal: terminal.ts's Prompt driven through node:readline
 * with stand-in terminal streams, then client.ts itself in a real terminal
 * (tmux, whose screen the tests read back) against a real server.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { MAX_MESSAGE_BYTES } from "../line_buffer.ts";
import { MAX_TYPED_MESSAGES, Prompt, type PromptHandlers } from "../terminal.ts";
import { say } from "../protocol.ts";
import { startUdpServer } from "../udp_server.ts";
import { join, ROOT, runScript, startScriptServer, TestServer, within } from "./util.ts";
import { TestPeer } from "./udp_util.ts";

const decoder = new TextDecoder();
const UP = "\x1b[A";

/** A stand-in terminal: keys go in, everything written comes out as text. */
class FakeTerminal {
  input = Object.assign(new PassThrough(), {
    isTTY: true,
    raw: false,
    setRawMode(mode: boolean) {
      this.raw = mode;
      return this;
    },
  });
  output = Object.assign(new PassThrough(), { isTTY: true, columns: 80, rows: 24 });
  errors = Object.assign(new PassThrough(), { isTTY: true, columns: 80, rows: 24 });
  written = "";
  statuses = "";

  constructor() {
    this.output.on("data", (chunk: Uint8Array) => this.written += decoder.decode(chunk));
    this.errors.on("data", (chunk: Uint8Array) => this.statuses += decoder.decode(chunk));
  }

  type(keys: string): void {
    this.input.write(keys);
  }
}

function prompt(
  terminal: FakeTerminal,
  handlers: Partial<PromptHandlers> = {},
): Prompt {
  return new Prompt(terminal, { typed: () => [], interrupted: () => {}, ...handlers });
}

const text = async (message: Promise<Uint8Array | null>) => {
  const bytes = await within(2000, "a typed message", message);
  return bytes === null ? null : decoder.decode(bytes);
};

Deno.test("Prompt hands out typed lines, and Up brings back the last one (history)", async () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal);
  assert.equal(terminal.input.raw, true);
  terminal.type("first 你好\r");
  assert.equal(await text(typed.next()), "first 你好");
  terminal.type(UP + "\r");
  assert.equal(await text(typed.next()), "first 你好");
  typed.close();
  assert.equal(await text(typed.next()), null);
  assert.equal(terminal.input.raw, false, "raw mode is left on close");
});

Deno.test("Prompt cuts a long typed line into text pieces of at most 255 bytes", async () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal);
  const line = "/nick " + "字".repeat(200); // 606 bytes: a command only as a whole
  terminal.type(line + "\r");
  const pieces: string[] = [];
  let received = "";
  while (received.length < line.length) {
    const piece = (await text(typed.next()))!;
    assert.ok(new TextEncoder().encode(piece).length <= MAX_MESSAGE_BYTES);
    // Every piece is text: "//" escapes the one that begins with "/".
    assert.ok(!piece.startsWith("/") || piece.startsWith("//"), piece);
    pieces.push(piece);
    received += piece.startsWith("//") ? piece.slice(1) : piece;
  }
  assert.equal(received, line);
  assert.equal(pieces.length, 3);
  typed.close();
});

Deno.test("Prompt prints a line above the one being typed and draws the typed text again", () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal);
  terminal.type("I am typ");
  const before = terminal.written.length;
  typed.print("<bob> interrupting!");
  const after = terminal.written.slice(before);
  const printedAt = after.indexOf("<bob> interrupting!\n");
  assert.ok(printedAt >= 0, JSON.stringify(after));
  // The prompt and the half-typed line come back below the printed line.
  assert.ok(after.slice(printedAt).includes("> I am typ"), JSON.stringify(after));
  // And were erased above it first (cursor to column 0, clear down).
  const clearDown = ["\x1b[0J", "\x1b[J"];
  assert.ok(
    clearDown.some((code) => after.slice(0, printedAt).includes(code)),
    JSON.stringify(after),
  );
  typed.close();
});

Deno.test("Prompt replaces a typed line with how the room shows it, when told to", async () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal, {
    typed: (line) => line.startsWith("/") ? [] : [`<alice> ${line}`],
  });
  terminal.type("hello\r");
  assert.equal(await text(typed.next()), "hello");
  assert.ok(terminal.written.includes("<alice> hello\n"));
  terminal.type("/list\r");
  assert.equal(await text(typed.next()), "/list");
  assert.ok(!terminal.written.includes("<alice> /list"));
  typed.close();
});

Deno.test("Prompt refuses a line while not connected, saying so, and sends the next one", async () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal);
  typed.accepting = false;
  terminal.type("lost?\r");
  typed.accepting = true;
  terminal.type("kept\r");
  assert.equal(await text(typed.next()), "kept");
  assert.ok(terminal.statuses.includes("not connected: not sent: lost?\n"), terminal.statuses);
  typed.close();
});

Deno.test("Prompt holds at most MAX_TYPED_MESSAGES unsent lines and says when it refuses one", async () => {
  const terminal = new FakeTerminal();
  const typed = prompt(terminal);
  for (let i = 0; i <= MAX_TYPED_MESSAGES; i++) terminal.type(`line ${i}\r`);
  for (let i = 0; i < MAX_TYPED_MESSAGES; i++) {
    assert.equal(await text(typed.next()), `line ${i}`);
  }
  assert.ok(
    terminal.statuses.includes(`${MAX_TYPED_MESSAGES} lines are still waiting to be sent`),
    terminal.statuses,
  );
  terminal.type("after\r");
  assert.equal(await text(typed.next()), "after");
  typed.close();
});

Deno.test("Prompt: Ctrl-C is reported, Ctrl-D on an empty line ends the input", async () => {
  const terminal = new FakeTerminal();
  let interrupts = 0;
  const typed = prompt(terminal, { interrupted: () => interrupts++ });
  terminal.type("\x03");
  terminal.type("\x04");
  assert.equal(await text(typed.next()), null);
  assert.equal(interrupts, 1);
  assert.equal(terminal.input.raw, false);
});

// ---- client.ts in a real terminal (tmux)

/** A tmux server of the test's own, holding one window of a given size. */
class Tmux implements AsyncDisposable {
  #socket = `netchat-test-${Deno.pid}-${Math.random().toString(36).slice(2)}`;

  async run(...args: string[]): Promise<string> {
    const output = await new Deno.Command("tmux", { args: ["-L", this.#socket, ...args] })
      .output();
    if (!output.success) throw new Error(`tmux ${args[0]}: ${decoder.decode(output.stderr)}`);
    return decoder.decode(output.stdout);
  }

  /** Starts `command` in a window of `columns` x `rows`, in the project folder. */
  start(command: string, columns = 60, rows = 20): Promise<string> {
    return this.run(
      "new-session",
      "-d",
      "-x",
      String(columns),
      "-y",
      String(rows),
      "-c",
      ROOT,
      command,
    );
  }

  keys(...keys: string[]): Promise<string> {
    return this.run("send-keys", ...keys);
  }

  /** The screen's lines, trailing blanks removed. */
  async screen(): Promise<string[]> {
    const text = await this.run("capture-pane", "-p");
    return text.replace(/\s+$/, "").split("\n").map((line) => line.trimEnd());
  }

  /**
   * Resolves with the screen once `ready` holds for it. The screen has no
   * event to wait on, so it is read again every 20 ms until it does, for at
   * most `ms`.
   */
  async until(what: string, ready: (screen: string[]) => boolean, ms = 10_000): Promise<string[]> {
    const deadline = Date.now() + ms;
    while (true) {
      const screen = await this.screen();
      if (ready(screen)) return screen;
      if (Date.now() > deadline) {
        throw new Error(`${what}: not on screen within ${ms} ms:\n${screen.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.run("kill-server").catch(() => {});
  }
}

const clientCommand = (port: number, flags: string) =>
  `'${Deno.execPath()}' run --quiet --allow-net client.ts --port ${port} ${flags}; ` +
  `echo "exit=$?"; stty -a | grep -o -- ' -*icanon '; read _`;

Deno.test("client.ts in a terminal: a line from the room never breaks the line being typed", async () => {
  await using server = new TestServer();
  await using tmux = new Tmux();
  await tmux.start(clientCommand(server.port, "--name alice"));
  await tmux.until("alice's prompt", (screen) => screen.at(-1) === "alice>");
  await tmux.keys("-l", "I am typing a long sente");
  await tmux.until("alice's typing", (screen) => screen.at(-1)!.endsWith("long sente"));
  using bob = await join(server);
  await bob.send("/nick bob\n");
  await bob.until(/is now bob$/);
  await bob.send("bob interrupting!\n");
  // The line and the redrawn prompt are separate writes: wait for the screen to settle.
  let screen = await tmux.until(
    "bob's line, then the prompt again",
    (s) => s.includes("<bob> bob interrupting!") && s.at(-1)!.startsWith("alice>"),
  );
  // The room's line is above; what alice typed is intact on the prompt line.
  assert.equal(screen.at(-1), "alice> I am typing a long sente");
  assert.ok(screen.indexOf("<bob> bob interrupting!") < screen.length - 1);
  assert.ok(!screen.some((line) => line.includes("sente<bob>")), screen.join("\n"));

  await tmux.keys("-l", "nce now");
  await tmux.keys("Enter");
  assert.equal(await bob.until(/^</), "<alice> I am typing a long sentence now");
  screen = await tmux.until("alice's own line", (s) => s.at(-1) === "alice>");
  // Shown as the room shows it, in place of the line as typed.
  assert.ok(screen.includes("<alice> I am typing a long sentence now"), screen.join("\n"));
  assert.ok(!screen.includes("alice> I am typing a long sentence now"), screen.join("\n"));

  await tmux.keys("-l", "/me waves");
  await tmux.keys("Enter");
  assert.equal(await bob.until(/^\* alice/), "* alice waves");
  await tmux.until("alice's action", (s) => s.includes("* alice waves"));
  // Up twice: the line before last comes back, ready to edit and send again.
  await tmux.keys("Up", "Up");
  await tmux.until("history", (s) => s.at(-1) === "alice> I am typing a long sentence now");
  await tmux.keys("C-u", "C-d");
  screen = await tmux.until("the exit", (s) => s.some((line) => line.startsWith("exit=")));
  assert.ok(screen.includes("exit=0"), screen.join("\n"));
  // The terminal is back in canonical mode: the shell can read lines again.
  await tmux.until("canonical mode", (s) => s.some((line) => line.trim() === "icanon"));
  assert.equal(await bob.until(/^\* alice left/), "* alice left (eof)");
});

Deno.test("client.ts --reconnect in a terminal: comes back to a restarted server under its name", async () => {
  const first = await startScriptServer("server.ts");
  const port = first.port;
  await using tmux = new Tmux();
  await tmux.start(clientCommand(port, "--name carol --reconnect"), 70);
  await tmux.until("carol's prompt", (screen) => screen.at(-1) === "carol>");
  first.child.kill("SIGTERM");
  await first.child.status;
  await Promise.all([first.stdout.rest(), first.stderr.rest()]);
  await tmux.until("the retry", (s) => s.some((line) => line.startsWith("reconnect failed")));
  await tmux.keys("-l", "typed while down");
  await tmux.keys("Enter");
  await tmux.until("the refusal", (s) => s.includes("not connected: not sent: typed while down"));
  const server = await within(5000, "a server on the same port", startOn(port));
  try {
    await within(
      10_000,
      "carol back",
      server.stdout.until((line) => line.includes("-> carol")),
    );
    await tmux.until("reconnected", (s) => s.some((line) => line.startsWith("reconnected to")));
    await tmux.keys("-l", "hello again");
    await tmux.keys("Enter");
    await within(
      5000,
      "carol's line",
      server.stdout.until((l) => l.endsWith("<carol> hello again")),
    );
    await tmux.keys("C-c");
    const screen = await tmux.until("the exit", (s) => s.some((l) => l.startsWith("exit=")));
    assert.ok(screen.includes("leaving (Ctrl-C again to quit at once)"), screen.join("\n"));
    assert.ok(screen.includes("exit=0"), screen.join("\n"));
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await Promise.all([server.stdout.rest(), server.stderr.rest()]);
  }
});

/** Starts server.ts on `port` (the one its predecessor had) and waits until it listens. */
async function startOn(port: number) {
  const server = runScript("server.ts", ["--port", String(port)]);
  await server.stdout.until((line) => line.includes("listening on "));
  return server;
}

Deno.test("client.ts in a narrow terminal: lines arrive above a wrapped line, and Enter mid-line replaces all of it", async () => {
  await using server = new TestServer();
  await using tmux = new Tmux();
  await tmux.start(clientCommand(server.port, "--name carol"), 30, 14);
  await tmux.until("carol's prompt", (screen) => screen.at(-1) === "carol>");
  const typed = "this is a line that wraps around the narrow window twice over";
  await tmux.keys("-l", typed);
  // "carol> " and 61 characters: three rows of 30.
  await tmux.until("the wrapped line", (s) => s.at(-1) === "ice over");
  using bob = await join(server);
  await bob.send("/nick bob\n");
  await bob.until(/is now bob$/);
  await bob.send("msg 6 Z\n");
  let screen = await tmux.until(
    "bob's line, then the prompt again",
    (s) => s.includes("<bob> msg 6 Z") && s.at(-1) === "ice over",
  );
  assert.deepEqual(screen.slice(-4), [
    "<bob> msg 6 Z",
    "carol> this is a line that wra",
    "ps around the narrow window tw",
    "ice over",
  ]);
  // Enter with the cursor at the start of the line: all three rows are replaced.
  await tmux.keys("Home", "Enter");
  assert.equal(await bob.until(/^<carol>/), `<carol> ${typed}`);
  screen = await tmux.until("carol's own line", (s) => s.at(-1) === "carol>");
  assert.deepEqual(screen.slice(-4), [
    "<carol> this is a line that wr",
    "aps around the narrow window t",
    "wice over",
    "carol>",
  ]);
  assert.ok(!screen.some((line) => line.startsWith("carol> this")), screen.join("\n"));
});

Deno.test("udp_client.ts in a terminal: the same prompt; Ctrl-C leaves the room with /quit", async () => {
  const log: string[] = [];
  const left = Promise.withResolvers<void>();
  const server = startUdpServer({
    host: "127.0.0.1",
    port: 0,
    log: (line) => {
      log.push(line);
      if (/ dora \(quit\)$/.test(line)) left.resolve();
    },
  });
  try {
    await using tmux = new Tmux();
    await tmux.start(
      `'${Deno.execPath()}' run --quiet --allow-net udp_client.ts --port ${server.addr.port} ` +
        `--name dora; echo "exit=$?"; read _`,
    );
    await tmux.until("dora's prompt", (screen) => screen.at(-1) === "dora>");
    await tmux.keys("-l", "half typed");
    await tmux.until("dora's typing", (s) => s.at(-1) === "dora> half typed");
    using eve = new TestPeer();
    await eve.send(server.addr, "/nick eve");
    assert.equal(await eve.next(), say.welcome("eve"));
    await eve.send(server.addr, "hello from eve");
    const screen = await tmux.until(
      "eve's line, then the prompt again",
      (s) => s.includes("<eve> hello from eve") && s.at(-1)!.startsWith("dora>"),
    );
    assert.equal(screen.at(-1), "dora> half typed");
    await tmux.keys("-l", " and done");
    await tmux.keys("Enter");
    assert.equal(await eve.next(), "<dora> half typed and done");
    await tmux.until("dora's own line", (s) => s.includes("<dora> half typed and done"));
    await tmux.keys("C-c");
    await within(5000, "dora's /quit", left.promise);
    await tmux.until("the exit", (s) => s.includes("exit=130"));
  } finally {
    await server.shutdown();
  }
});
