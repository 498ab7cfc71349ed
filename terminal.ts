/**
 * The client's prompt when it runs in a terminal, on `node:readline` (which
 * ships with Deno): line editing, Up/Down history, and lines from the network
 * printed above the line being typed, which is redrawn below them intact.
 *
 * Only the screen is handled here; what a typed line means (a message, a
 * command, how the room will show it) is client.ts's business.
 *
 * @module
 */
import process from "node:process";
import * as readline from "node:readline";
import { decodeUtf8, MAX_MESSAGE_BYTES, splitMessage } from "./line_buffer.ts";
import { ownLine } from "./protocol.ts";

/** Lines typed but not yet sent that may wait; more are refused, with a status line. */
export const MAX_TYPED_MESSAGES = 100;
/** Lines kept for Up/Down. */
export const HISTORY_SIZE = 500;

const encoder = new TextEncoder();

/** A readable stream that readline can drive: a terminal, or a test's stand-in for one. */
export type TerminalInput = NodeJS.ReadableStream & { isTTY?: boolean };
/** A writable stream with a terminal's width: stdout, stderr, or a test's stand-in. */
export type TerminalOutput = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** What the prompt asks of its owner. */
export interface PromptHandlers {
  /**
   * A line was typed and Enter pressed; `messages` are what will be sent for
   * it. Returns the lines to show in place of the typed line (how the room
   * will show them), or none to leave it as typed.
   */
  typed(line: string, messages: Uint8Array[]): string[];
  /** Ctrl-C. */
  interrupted(): void;
}

/**
 * A prompt on a terminal. Typed lines become messages for the server (a line
 * longer than one message becomes several pieces, each sent as text, as
 * `readInputMessages` cuts piped input) read with {@linkcode next}; at most
 * {@linkcode MAX_TYPED_MESSAGES} wait. Ctrl-D on an empty line ends the input.
 */
export class Prompt {
  #rl: readline.Interface;
  #output: TerminalOutput;
  #errors: TerminalOutput;
  #handlers: PromptHandlers;
  #waiting: Uint8Array[] = [];
  #wake?: () => void;
  #ended = false;
  #closed = false;
  // Rows the typed line took (prompt included) when Enter was pressed.
  #typedRows = 1;
  /** While false (the connection is down), typed lines are refused with a status line. */
  accepting = true;

  constructor(
    streams: { input: TerminalInput; output: TerminalOutput; errors?: TerminalOutput },
    handlers: PromptHandlers,
  ) {
    this.#output = streams.output;
    this.#errors = streams.errors ?? streams.output;
    this.#handlers = handlers;
    this.#rl = readline.createInterface({
      input: streams.input,
      output: streams.output,
      prompt: "> ",
      terminal: true,
      historySize: HISTORY_SIZE,
    });
    // Before readline acts on Enter, note how many rows the typed line takes:
    // that is what to erase if the line is shown again as the room sees it.
    streams.input.prependListener("keypress", (_text: unknown, key?: { name?: string }) => {
      if (key?.name === "return" || key?.name === "enter") {
        // Enter in the middle of a wrapped line: go to its end first (Ctrl-E),
        // so the whole line is below the cursor's row when it is replaced.
        this.#rl.write(null, { ctrl: true, name: "e" });
        this.#typedRows = this.#rl.getCursorPos().rows + 1;
      }
    });
    this.#rl.on("line", (line: string) => this.#typed(line));
    this.#rl.on("SIGINT", () => this.#handlers.interrupted());
    // Ctrl-D on an empty line, or close(): the prompt and anything half typed
    // are erased, and the cursor is left at the start of a clean line.
    this.#rl.on("close", () => {
      this.#erase();
      this.#closed = true;
      this.#end();
    });
    this.#rl.prompt();
  }

  /** A prompt on this process's own terminal: stdin, stdout, and stderr for status lines. */
  static onTerminal(handlers: PromptHandlers): Prompt {
    return new Prompt(
      { input: process.stdin, output: process.stdout, errors: process.stderr },
      handlers,
    );
  }

  /** Shows the name the room knows us by in the prompt (`alice> `). */
  set name(name: string) {
    this.#rl.setPrompt(`${name}> `);
    if (!this.#closed) this.#redraw(() => {});
  }

  /** Prints a line from the network above the line being typed. */
  print(line: string): void {
    this.#redraw(() => this.#output.write(line + "\n"));
  }

  /** Prints a status line (stderr) above the line being typed. */
  status(line: string): void {
    this.#redraw(() => this.#errors.write(line + "\n"));
  }

  /** The next message typed, or `null` once input has ended (Ctrl-D, or {@linkcode close}). */
  async next(): Promise<Uint8Array | null> {
    while (this.#waiting.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return this.#waiting.shift()!;
  }

  /** Ends the input and gives the terminal back as it was (no raw mode, no prompt). */
  close(): void {
    if (!this.#closed) this.#rl.close();
  }

  #typed(line: string): void {
    if (!this.accepting) {
      return this.status(`not connected: not sent: ${line}`);
    }
    const messages = splitMessage(encoder.encode(line), MAX_MESSAGE_BYTES, { piecesAsText: true });
    if (this.#waiting.length + messages.length > MAX_TYPED_MESSAGES) {
      return this.status(`${this.#waiting.length} lines are still waiting to be sent: not sent`);
    }
    const shown = this.#handlers.typed(line, messages);
    if (shown.length > 0) {
      // Replace the line as typed with the line as the room will show it.
      readline.moveCursor(this.#output, 0, -this.#typedRows);
      readline.cursorTo(this.#output, 0);
      readline.clearScreenDown(this.#output);
      this.#output.write(shown.join("\n") + "\n");
    }
    this.#waiting.push(...messages);
    this.#wake?.();
    this.#rl.prompt();
  }

  // Clears the prompt and the line being typed, writes, and draws them again below.
  #redraw(write: () => void): void {
    if (this.#closed) return write();
    this.#erase();
    write();
    // readline moves up by the rows the cursor was on when it last drew the
    // line (`prevRows`, as Node's own readline keeps it); the line was just
    // erased from its first row, so that is now 0.
    (this.#rl as unknown as { prevRows?: number }).prevRows = 0;
    this.#rl.prompt(true);
  }

  // Clears the prompt and the line being typed, from the row the prompt begins on.
  #erase(): void {
    readline.moveCursor(this.#output, 0, -this.#rl.getCursorPos().rows);
    readline.cursorTo(this.#output, 0);
    readline.clearScreenDown(this.#output);
  }

  #end(): void {
    this.#ended = true;
    this.#wake?.();
  }
}

/**
 * What a prompt shows in place of a typed line, for a client of a netchat
 * room whose name (from the server's lines) is `name`: each message as the
 * room will show it (`<alice> hi`, `* alice waves`), or nothing, leaving the
 * line as typed, when the name is not known yet or a message is a command
 * the room does not relay ({@linkcode ownLine}).
 */
export function asTheRoomShows(name: string | undefined, messages: Uint8Array[]): string[] {
  if (name === undefined) return [];
  const shown = messages.map((message) => ownLine(name, decodeUtf8(message)));
  return shown.every((line) => line !== undefined) ? shown as string[] : [];
}
