/**
 * The TCP connection layer: one {@linkcode Connection} per accepted socket,
 * owning everything about it that is not chat: the read loop, a bounded
 * output queue and its writer, backpressure, the half-close, the FIN
 * bookkeeping and the close's grace timer.
 *
 * It is typed on {@linkcode ByteConn}, the part of `Deno.Conn` it uses, so a
 * TLS socket (tls.ts) plugs in unchanged; no-delay is set where the socket
 * is accepted.
 *
 * The close, in protocol order (RFC 9293, section 3.6):
 * 1. `close()`: stop taking input, flush what is queued, then send our FIN
 *    with `closeWrite()` (half-close: the peer's FIN can still be read).
 * 2. The read loop sees the peer's FIN (`read()` returns `null`).
 * 3. `release()` closes the socket. When the peer's FIN came first, this
 *    `close()` is what sends ours. A peer that never sends its FIN is closed
 *    anyway after {@linkcode CLOSE_GRACE_MS}.
 *
 * @module
 */
import { joinBytes, READ_BUFFER_SIZE, unpinned, writeAll } from "./line_buffer.ts";
import { errorText, formatAddress } from "./cli.ts";

/** How long a closing connection may take to exchange FINs before it is closed anyway, in ms. */
export const CLOSE_GRACE_MS = 2000;
// Reads start small so an idle connection costs little memory, and grow to
// READ_BUFFER_SIZE for a peer that sends a lot.
const INITIAL_READ_BYTES = 256;
// A connection whose own queue is this full is not read from until it
// drains: backpressure, so an echo client that never reads cannot grow our
// memory. (Bytes.)
const PAUSE_READING_BYTES = 64 * 1024;
// Queued entries that may be pieces of shared slabs (line_buffer.ts's
// allocateBytes); those queued behind them are copies of their own.
const MAX_SHARED_QUEUED = 4;
// Queued lines are joined into writes of at most this many bytes.
const MAX_WRITE_BYTES = 64 * 1024;

/**
 * The part of `Deno.Conn` a connection uses: `Deno.TcpConn` has it, and so
 * does tls.ts's socket. `setNoDelay` is TCP's (Nagle off).
 */
export interface ByteConn {
  readonly remoteAddr: Deno.Addr;
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  setNoDelay?(noDelay?: boolean): void;
}

/** What a connection tells its owner. */
export interface ConnectionHandler {
  /**
   * Bytes read from the peer: a view into the read buffer, valid until the
   * returned promise (if any) settles; the next read waits for it.
   */
  received(chunk: Uint8Array): void | Promise<void>;
  /**
   * The peer's FIN has arrived: whatever it sent after its last line end is
   * its last line. Called once, before `ended("eof")`; the read waits for
   * the returned promise, if any.
   */
  endOfInput(): void | Promise<void>;
  /**
   * The connection ended from below: `eof` (the peer's FIN), `reset`, a
   * read or write error, or `slow consumer` (its queue would pass the bound;
   * the socket is released right after). Called at most once, and never after the owner
   * called `close()` or `release()` itself. The owner calls `close()` (to
   * flush and FIN) or `release()`.
   */
  ended(cause: string): void;
  /** The socket was released (the last step of every connection), with whether the peer's FIN came. */
  released(finReceived: boolean): void;
}

/** Settings shared by every connection of a server. */
export interface ConnectionSettings {
  /** Output queued for one connection, in bytes; past it the peer is dropped as a slow consumer. */
  maxQueueBytes: number;
  /** Prints each step of the connection's life cycle (`--trace`), or `undefined` for none. */
  trace?: (line: string) => void;
}

/**
 * One accepted connection. Its state is all here, in private fields:
 * `open` (reading and writing), `closing` (flushing, FIN sent or on its way,
 * reading only to see the peer's FIN), `closed` (socket released).
 */
export class Connection {
  readonly #conn: ByteConn;
  readonly #settings: ConnectionSettings;
  readonly #handler: ConnectionHandler;
  #state: "open" | "closing" | "closed" = "open";
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #finReceived = false;
  #finSent = false;
  #graceTimer?: ReturnType<typeof setTimeout>;
  #drained?: PromiseWithResolvers<void>;
  /** An echo's write in flight ({@linkcode echo}) and what it writes. */
  #echoWrite?: Promise<number>;
  #echoBlock?: Uint8Array;
  /** A pause in reading (flood control); `close()` and `release()` end it early. */
  #pause?: { timer: ReturnType<typeof setTimeout>; resume: () => void };

  // Receivers of the same broadcasts queue the same buffers in the same
  // order, so the last batch joined is kept and handed to the next receiver
  // whose queue starts with exactly those buffers: one copy for the room, not
  // one per receiver. Writes only read a batch, so sharing it is safe.
  static #lastJoin?: { pieces: Uint8Array[]; bytes: Uint8Array };

  /** Takes over `conn` and starts reading from it. */
  constructor(conn: ByteConn, settings: ConnectionSettings, handler: ConnectionHandler) {
    this.#conn = conn;
    this.#settings = settings;
    this.#handler = handler;
    // Handshake: accept() returned after SYN, SYN-ACK, ACK had completed.
    this.#trace("accepted (handshake done: SYN, SYN-ACK, ACK)");
    this.#readLoop();
  }

  /** The peer's address as `host:port`. */
  get address(): string {
    return formatAddress(this.#conn.remoteAddr);
  }

  /** True once `close()` or `release()` has begun: no more input is handled. */
  get closing(): boolean {
    return this.#state !== "open";
  }

  /** True while reading is paused by {@linkcode pause}. */
  get paused(): boolean {
    return this.#pause !== undefined;
  }

  // ---- output: a bounded queue, flushed by one writer at a time

  /**
   * Queues `bytes` (not copied: the caller must not change them) behind
   * what is queued. When that would pass `maxQueueBytes`, the peer is not
   * reading fast enough: the handler is told `ended("slow consumer")` and the
   * socket is released. Sending on a closed connection does nothing.
   */
  send(bytes: Uint8Array): void {
    if (this.#state === "closed") return;
    if (this.#queuedBytes + bytes.length > this.#settings.maxQueueBytes) {
      // A slow consumer: it is dropped rather than let grow our memory.
      if (this.#state === "open") this.#handler.ended("slow consumer");
      return this.release();
    }
    // A queue this long belongs to a peer that is not keeping up: what joins
    // it now may wait long, so it must not keep a shared slab alive (at most
    // a few pieces of slabs, 64 KiB each, are held beyond maxQueueBytes).
    this.#queue.push(this.#queue.length < MAX_SHARED_QUEUED ? bytes : unpinned(bytes));
    this.#queuedBytes += bytes.length;
    // Start the writer after the current read is handled, so all the lines
    // from one read go out in one write.
    this.#startWriter();
  }

  /**
   * Writes `block` now if nothing is queued, skipping the queue (a welcome, a
   * refusal: one write op, less garbage in a burst of accepts); otherwise a
   * copy joins the queue. Settles when written.
   */
  async writeNow(block: Uint8Array): Promise<void> {
    const writing = this.#writeAhead(block);
    if (writing === undefined) return;
    try {
      // Most writes are taken whole: one write op before the general loop
      // saves an async call and a view per write.
      const written = await writing;
      if (written < block.length) await writeAll(this.#conn, block.subarray(written));
    } catch (error) {
      this.#writing = false;
      return this.#failed(error, "write");
    }
    this.#written();
  }

  /** A write outside the queue is done: the writer takes over what came meanwhile. */
  #written(): void {
    this.#writing = false;
    // Whatever was queued meanwhile, or the FIN of a close that began meanwhile.
    if (this.#queue.length > 0 || this.#state === "closing") this.#startWriter();
  }

  /**
   * Sends `block`, a view into the read buffer handed to `received()`, back
   * at once: called from within `received()`, its write is issued now and the
   * read loop waits for it before reading again, so the buffer is not reused
   * meanwhile (no copy, no allocation, backpressure for free). The wait is in
   * the loop itself rather than in an async function of its own: one promise
   * and one turn less per read (issue 15). If anything is queued, a copy
   * joins the queue instead.
   */
  echo(block: Uint8Array): void {
    const writing = this.#writeAhead(block);
    if (writing === undefined) return;
    this.#echoBlock = block;
    this.#echoWrite = writing;
  }

  /**
   * Starts writing `block` ahead of the queue, if the queue is empty and no
   * write is in flight; otherwise a copy joins the queue (or, once closed,
   * nothing happens) and there is no write to wait for.
   */
  #writeAhead(block: Uint8Array): Promise<number> | undefined {
    if (this.#state === "closed") return undefined;
    if (this.#writing || this.#queue.length > 0) {
      // A copy of its own: it may wait in the queue (see send()).
      this.send(block.slice());
      return undefined;
    }
    this.#writing = true;
    return this.#conn.write(block);
  }

  #startWriter(): void {
    if (this.#writing) return;
    this.#writing = true;
    // One microtask starts every writer that a read's lines woke: a line to a
    // room of 100 would otherwise queue 100 of them.
    Connection.#toFlush.push(this);
    if (Connection.#toFlush.length === 1) queueMicrotask(Connection.#flushAll);
  }

  /** Connections whose writer starts in the next microtask. */
  static #toFlush: Connection[] = [];

  static #flushAll(): void {
    const connections = Connection.#toFlush;
    Connection.#toFlush = [];
    // Each flush runs up to its first write, which is issued at once.
    for (const connection of connections) connection.#flush();
  }

  #takeBatch(): Uint8Array {
    const queue = this.#queue;
    if (queue.length === 1 || queue[0].length >= MAX_WRITE_BYTES) return queue.shift()!;
    let size = 0;
    let count = 0;
    while (count < queue.length && size + queue[count].length <= MAX_WRITE_BYTES) {
      size += queue[count++].length;
    }
    const last = Connection.#lastJoin;
    if (last !== undefined && last.pieces.length === count && startsWith(queue, last.pieces)) {
      this.#dropQueued(count);
      return last.bytes;
    }
    const pieces = queue.slice(0, count);
    this.#dropQueued(count);
    const batch = joinBytes(pieces, size);
    Connection.#lastJoin = { pieces, bytes: batch };
    return batch;
  }

  /** Takes the first `count` buffers off the queue (the whole queue, most often). */
  #dropQueued(count: number): void {
    if (count === this.#queue.length) this.#queue = [];
    else this.#queue.splice(0, count);
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.#state !== "closed") {
        const batch = this.#takeBatch();
        const written = await this.#conn.write(batch);
        if (written < batch.length) await writeAll(this.#conn, batch.subarray(written));
        this.#queuedBytes -= batch.length;
      }
      if (this.#state === "closing" && !this.#finSent && !this.#finReceived) {
        // Close, step 1: everything owed is written; our FIN leaves now.
        // Half-close: the peer's FIN can still be read.
        await this.#conn.closeWrite();
        this.#finSent = true;
        this.#trace("FIN sent (closeWrite: no more data from the server)");
      }
    } catch (error) {
      this.#failed(error, "write");
    } finally {
      this.#writing = false;
      if (this.#queue.length === 0) this.#drained?.resolve();
      // The peer's FIN is in and everything is written: release() sends our FIN.
      if (this.#state === "closing" && this.#finReceived) this.release();
    }
  }

  #waitDrained(): Promise<void> {
    this.#drained ??= Promise.withResolvers<void>();
    return this.#drained.promise.then(() => {
      this.#drained = undefined;
    });
  }

  // ---- input

  /**
   * Holds the next read back for `ms` milliseconds (flood control), or until
   * the connection starts closing, so its FIN is still read at once.
   */
  pause(ms: number): Promise<void> {
    return new Promise<void>((resume) => {
      const timer = setTimeout(resume, ms);
      this.#pause = { timer, resume };
    }).then(() => {
      this.#pause = undefined;
    });
  }

  #wakeReader(): void {
    if (this.#pause === undefined) return;
    clearTimeout(this.#pause.timer);
    this.#pause.resume();
  }

  // An idle connection waits in this loop, so it keeps little: the work on a
  // chunk is the handler's, and the error path is #failed's.
  async #readLoop(): Promise<void> {
    let buffer = new Uint8Array(INITIAL_READ_BYTES);
    try {
      while (true) {
        if (this.#queuedBytes >= PAUSE_READING_BYTES) await this.#waitDrained();
        if (this.#state === "closed") return;
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        // After a close began, input is read only to find the FIN.
        if (this.#state !== "open") continue;
        // The chunk is a view into `buffer`: it is not read into again until it is handled.
        const handling = this.#handler.received(buffer.subarray(0, n));
        if (handling !== undefined) await handling;
        const echoing = this.#echoWrite;
        if (echoing !== undefined) {
          const block = this.#echoBlock!;
          this.#echoWrite = this.#echoBlock = undefined;
          try {
            // Most writes are taken whole: the general loop only for the rest.
            const written = await echoing;
            if (written < block.length) await writeAll(this.#conn, block.subarray(written));
          } catch (error) {
            this.#writing = false;
            return this.#failed(error, "write");
          }
          this.#written();
        }
        if (n === buffer.length && buffer.length < READ_BUFFER_SIZE) {
          buffer = new Uint8Array(READ_BUFFER_SIZE);
        }
      }
    } catch (error) {
      return this.#failed(error, "read");
    }
    // Close, step 2: the peer's FIN arrived (the kernel has already ACKed it).
    this.#finReceived = true;
    this.#trace("FIN received (read returned EOF: the client sends no more)");
    if (this.#state === "open") {
      const handling = this.#handler.endOfInput();
      if (handling !== undefined) await handling;
    }
    // Everything the peer sent before its FIN has been handled.
    if (this.#state === "open") this.#handler.ended("eof");
    if (this.#state === "closing" && !this.#writing) this.release();
  }

  #failed(error: unknown, during: "read" | "write"): void {
    if (this.#state === "closed") return; // we closed it ourselves
    const reset = isReset(error);
    if (reset && during === "read") this.#trace("RST received (connection reset by peer)");
    if (this.#state === "open") {
      this.#handler.ended(reset ? "reset" : `${during} error: ${errorText(error)}`);
    }
    this.release();
  }

  // ---- the close

  /**
   * Begins the close: no more input is handled, `notice` (if any) is sent
   * last, or first of all when `urgent` (a shutdown notice must not wait
   * behind a backlog; queued entries are whole lines, so lines stay whole),
   * then our FIN. The peer has CLOSE_GRACE_MS to answer with its own before
   * the socket is released anyway. Does nothing once closing.
   */
  close(notice?: Uint8Array, urgent = false): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#wakeReader(); // so its FIN is read now, not after the pause
    if (notice !== undefined) {
      if (urgent) this.#queue.unshift(notice);
      else this.#queue.push(notice);
      this.#queuedBytes += notice.length;
    }
    // Nothing to wait for when the peer's FIN is in and nothing is left to
    // send: the flush below releases at once (the common end of a connection).
    const atOnce = this.#finReceived && !this.#writing && this.#queue.length === 0;
    if (!atOnce) this.#graceTimer = setTimeout(() => this.release(), CLOSE_GRACE_MS);
    this.#startWriter();
  }

  /**
   * Closes the socket for good, whatever is still queued. After a clean
   * close both FINs have been exchanged; a `Deno.Conn` is freed only here.
   */
  release(): void {
    if (this.#state === "closed") return;
    const finWasIn = this.#finReceived;
    this.#state = "closed";
    clearTimeout(this.#graceTimer);
    this.#wakeReader(); // it sees the connection closed, and ends
    this.#queue = [];
    this.#queuedBytes = 0;
    try {
      // Close, step 3: frees the socket; with the peer's FIN in and ours not
      // yet sent, this is what sends it.
      this.#conn.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to free.
    }
    if (finWasIn && !this.#finSent) {
      this.#finSent = true;
      this.#trace("FIN sent (close: both directions are done)");
    }
    this.#trace("closed (socket released)");
    this.#drained?.resolve();
    this.#handler.released(finWasIn);
  }

  #trace(step: string): void {
    this.#settings.trace?.(`trace ${this.address} ${step}`);
  }
}

/** Does `queue` begin with exactly the buffers of `pieces` (the same objects, in order)? */
function startsWith(queue: readonly Uint8Array[], pieces: readonly Uint8Array[]): boolean {
  for (let i = 0; i < pieces.length; i++) if (queue[i] !== pieces[i]) return false;
  return true;
}

/** Whether `error` means the peer reset the connection (or it broke under us). */
export function isReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted;
}
