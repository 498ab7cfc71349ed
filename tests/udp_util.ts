/**
 * Helpers for the UDP tests: a peer socket on loopback that sends and awaits
 * datagrams, and a lossy relay that drops every k-th datagram each way.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** A test that waits longer than this for a datagram has failed (it never sleeps on it). */
const RECEIVE_GUARD_MS = 5000;

/** A UDP socket on a loopback address (127.0.0.1, port 0, unless told), for playing a peer or a server in tests. */
export class TestPeer {
  readonly socket: Deno.DatagramConn;
  #buffer = new Uint8Array(65_535);

  /** A socket on `hostname` (a loopback address), on `port` or any free one. */
  constructor(hostname = "127.0.0.1", port = 0) {
    this.socket = Deno.listenDatagram({ transport: "udp", hostname, port });
  }

  get addr(): Deno.NetAddr {
    return this.socket.addr as Deno.NetAddr;
  }

  /** Sends text or bytes as one datagram. */
  async send(to: Deno.NetAddr, data: string | Uint8Array): Promise<void> {
    await this.socket.send(typeof data === "string" ? encoder.encode(data) : data, to);
  }

  /** The next datagram and its source; fails the test if none comes within 5 s. */
  async receiveFrom(): Promise<[Uint8Array, Deno.NetAddr]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no datagram within ${RECEIVE_GUARD_MS} ms`)),
        RECEIVE_GUARD_MS,
      );
    });
    try {
      const [bytes, from] = await Promise.race([this.socket.receive(this.#buffer), guard]);
      return [bytes.slice(), from as Deno.NetAddr];
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next datagram as text, one trailing "\n" removed. */
  async next(): Promise<string> {
    const [bytes] = await this.receiveFrom();
    return decoder.decode(bytes).replace(/\n$/, "");
  }

  /**
   * Every datagram received so far, without waiting for more: a marker sent
   * to itself goes behind whatever the kernel has queued for this socket
   * (loopback delivers in order), so the read ends at it. The caller must
   * know the server has sent all it will (from its log).
   */
  async received(): Promise<string[]> {
    const marker = `marker ${crypto.randomUUID()}`;
    await this.send(this.addr, marker);
    const texts: string[] = [];
    for (let text = await this.next(); text !== marker; text = await this.next()) {
      texts.push(text);
    }
    return texts;
  }

  /** Receives until a datagram's text satisfies `match`; returns that text. */
  async until(match: (text: string) => boolean): Promise<string> {
    while (true) {
      const text = await this.next();
      if (match(text)) return text;
    }
  }

  [Symbol.dispose](): void {
    try {
      this.socket.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * A relay between one client and a server that drops every `dropEvery`-th
 * datagram in each direction (counted separately), so loss is exact and
 * repeatable. Datagrams from the server go to the last client heard from.
 */
export class LossyRelay {
  readonly socket: Deno.DatagramConn;
  readonly dropped = { toServer: 0, toClient: 0 };
  readonly forwarded = { toServer: 0, toClient: 0 };
  #target: Deno.NetAddr;
  #dropEvery: number;
  #client?: Deno.NetAddr;
  #seen = { toServer: 0, toClient: 0 };
  #done: Promise<void>;

  constructor(target: Deno.NetAddr, dropEvery: number) {
    this.#target = target;
    this.#dropEvery = dropEvery;
    this.socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#done = this.#run();
  }

  get addr(): Deno.NetAddr {
    return this.socket.addr as Deno.NetAddr;
  }

  async #run(): Promise<void> {
    const buffer = new Uint8Array(65_535);
    while (true) {
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [datagram, source] = await this.socket.receive(buffer);
        bytes = datagram;
        from = source as Deno.NetAddr;
      } catch {
        return; // closed
      }
      const fromServer = from.hostname === this.#target.hostname &&
        from.port === this.#target.port;
      const direction = fromServer ? "toClient" : "toServer";
      if (!fromServer) this.#client = from;
      const to = fromServer ? this.#client : this.#target;
      if (to === undefined) continue;
      if (++this.#seen[direction] % this.#dropEvery === 0) {
        this.dropped[direction]++;
        continue;
      }
      this.forwarded[direction]++;
      await this.socket.send(bytes, to).catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.#done;
  }
}

/** A free UDP port on 127.0.0.1 for a program that cannot bind port 0 and tell us. */
export function freeUdpPort(): number {
  using peer = new TestPeer();
  return peer.addr.port;
}

/** `bytes` of `length`, all the ASCII letter "x". */
export function filled(length: number, byte = 0x78): Uint8Array {
  return new Uint8Array(length).fill(byte);
}
