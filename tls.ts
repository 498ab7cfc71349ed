/**
 * TLS for the TCP server: a listener whose connections look like a
 * `Deno.Conn` to the connection layer (read, write, closeWrite, close and the
 * two addresses), so nothing above this file knows whether a client spoke
 * TLS.
 *
 * Why `node:tls` and not `Deno.listenTls`: a stalled handshake must be cut
 * off (the slowloris of TLS servers). On Deno 2.9.6 a connection accepted by
 * `Deno.listenTls` that never completes its handshake cannot be closed from
 * JavaScript (`close()` waits on the handshake; measured with a pending read,
 * write, `handshake()` and none), while `node:tls`, which ships with Deno, has
 * `handshakeTimeout` and `destroy()`.
 *
 * The close over TLS (RFC 8446, section 6.1): `closeWrite()` sends
 * close_notify, then the FIN; a peer's close_notify, or a FIN without one
 * (ncat, any killed client), ends its input.
 *
 * @module
 */
import tls from "node:tls";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import type { Socket } from "node:net";
import { errorText, formatAddress } from "./cli.ts";
import type { ByteConn } from "./connection.ts";

/** How long a client may take over its TLS handshake before it is closed, in ms (nginx and Apache allow about this much). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Node's errors as Deno's, so the connection layer tells a reset from other failures. */
function denoError(error: Error & { code?: string }): Error {
  switch (error.code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(error.message);
    case "EPIPE":
      return new Deno.errors.BrokenPipe(error.message);
    case "ECONNABORTED":
      return new Deno.errors.ConnectionAborted(error.message);
    default:
      return error;
  }
}

function netAddr(hostname: string | undefined, port: number | undefined): Deno.NetAddr {
  return { transport: "tcp", hostname: hostname ?? "", port: port ?? 0 };
}

/**
 * A `node:net` or `node:tls` socket behind Deno's `read()`/`write()`
 * contract. Reads take what the socket has buffered (Node stops reading from
 * the kernel past its 16 KiB high-water mark, so an unread socket grows
 * nothing); a write resolves once Node has taken the bytes.
 */
export class SocketConn implements ByteConn {
  readonly #socket: Socket;
  #pending: Uint8Array = new Uint8Array(0);
  #ended = false;
  #error?: Error;
  #wake?: () => void;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.remoteAddr = netAddr(socket.remoteAddress, socket.remotePort);
    this.localAddr = netAddr(socket.localAddress, socket.localPort);
    const wake = () => {
      this.#wake?.();
      this.#wake = undefined;
    };
    socket.on("readable", wake);
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", (error: Error) => {
      this.#error = denoError(error);
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#pending.length === 0) {
      const chunk = this.#socket.read() as Uint8Array | null;
      if (chunk !== null) {
        this.#pending = chunk;
        break;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended || this.#socket.destroyed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const n = Math.min(buffer.length, this.#pending.length);
    buffer.set(this.#pending.subarray(0, n));
    this.#pending = this.#pending.subarray(n);
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#socket.destroyed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      this.#socket.write(data, (error?: Error | null) => {
        if (error) reject(denoError(error));
        else resolve(data.length);
      });
    });
  }

  /** Half-close: close_notify and the FIN; the peer's data can still be read. */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  /**
   * Frees the socket. Like a `Deno.TlsConn`'s close, it sends close_notify
   * and the FIN if `closeWrite()` has not (a peer that closed first gets
   * them, not a bare FIN, which OpenSSL 3 reports as a truncation); bytes
   * still unsent are dropped with them.
   */
  close(): void {
    if (!this.#socket.writableEnded && !this.#socket.destroyed) this.#socket.end();
    this.#socket.destroy();
    this.#ended = true;
    this.#wake?.();
  }

  setNoDelay(noDelay = true): void {
    this.#socket.setNoDelay(noDelay);
  }
}

/** A certificate or key that cannot be used; the message is OpenSSL's reason. */
export class TlsSetupError extends Error {
  override name = "TlsSetupError";
}

/** What the TLS listener tells its owner about connections before they are clients. */
export interface TlsEvents {
  /**
   * A TCP connection arrived; `open` counts every TCP connection to this
   * listener, this one and those still in their handshake included, so a
   * stalled handshake takes a slot as a client does. Return false to close
   * it at once.
   */
  connected(address: string, open: number): boolean;
  /** A connection ended without a finished handshake (timeout, alert, plain text). */
  failed(address: string, reason: string): void;
}

/**
 * Listens for TLS on `hostname:port` with a PEM certificate chain and key.
 * Connections come out of {@linkcode TlsListener.accept} once their
 * handshake is done; one that takes longer than `handshakeTimeoutMs` is
 * closed. Rejects with {@linkcode TlsSetupError} for a certificate or key
 * that cannot be used, or with Node's error (its `code`, e.g. EADDRINUSE)
 * when it cannot listen.
 */
export class TlsListener {
  readonly #server: tls.Server;
  #ready: SocketConn[] = [];
  #wake?: () => void;
  #closed = false;
  addr: Deno.NetAddr;

  private constructor(server: tls.Server, addr: Deno.NetAddr) {
    this.#server = server;
    this.addr = addr;
  }

  static async listen(
    options: {
      hostname: string;
      port: number;
      /** Share the port with other listeners that set this too (SO_REUSEPORT). */
      reusePort?: boolean;
      cert: string;
      key: string;
      handshakeTimeoutMs?: number;
    },
    events: TlsEvents,
  ): Promise<TlsListener> {
    checkKeyPair(options.cert, options.key);
    let server: tls.Server;
    try {
      server = tls.createServer({
        cert: options.cert,
        key: options.key,
        handshakeTimeout: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
        // Half-close: the client's close_notify ends its input, not our output.
        allowHalfOpen: true,
      });
    } catch (error) {
      // Whatever else it refuses (checkKeyPair has read both files): its words.
      throw new TlsSetupError(errorText(error));
    }
    const listener = new TlsListener(server, netAddr(options.hostname, options.port));
    let open = 0;
    // Each TCP connection's address, for the log if its handshake fails: by
    // then the TLS socket no longer knows it (Node keeps the TCP socket as
    // the TLS socket's `_parent`).
    const addresses = new WeakMap<object, string>();
    server.on("connection", (socket: Socket) => {
      open++;
      socket.once("close", () => open--);
      const address = formatAddress(netAddr(socket.remoteAddress, socket.remotePort));
      addresses.set(socket, address);
      if (!events.connected(address, open)) socket.destroy();
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      listener.#push(new SocketConn(socket));
    });
    server.on("tlsClientError", (error: Error & { code?: string }, socket: tls.TLSSocket) => {
      const parent = (socket as unknown as { _parent?: object })._parent ?? socket;
      events.failed(addresses.get(parent) ?? "unknown address", handshakeFailure(error));
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const { port, hostname: host, reusePort = false } = options;
      server.listen({ port, host, reusePort }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const bound = server.address() as { address: string; port: number };
    listener.addr = netAddr(bound.address, bound.port);
    return listener;
  }

  #push(conn: SocketConn): void {
    if (this.#closed) return conn.close();
    this.#ready.push(conn);
    this.#wake?.();
  }

  /** The next connection whose handshake is done; rejects with BadResource once closed. */
  async accept(): Promise<SocketConn> {
    while (this.#ready.length === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("listener closed");
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return this.#ready.shift()!;
  }

  /** Stops listening; connections already accepted are not touched. */
  close(): void {
    this.#closed = true;
    this.#server.close();
    for (const conn of this.#ready.splice(0)) conn.close();
    this.#wake?.();
  }
}

/**
 * Throws {@linkcode TlsSetupError} unless `cert` begins with a PEM
 * certificate and `key` is its private key. Deno 2.9.6's `tls.createServer`
 * takes any text and only fails at each handshake ("unsupported protocol"):
 * without this a wrong file makes a server that serves no one.
 */
function checkKeyPair(cert: string, key: string): void {
  let certificate: X509Certificate;
  let privateKey: KeyObject;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new TlsSetupError(`no PEM certificate in the --tls-cert file (${errorText(error)})`);
  }
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new TlsSetupError(`no PEM private key in the --tls-key file (${errorText(error)})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new TlsSetupError("the key is not the certificate's: give the key made with it");
  }
}

/** One line for why a handshake failed. */
function handshakeFailure(error: Error & { code?: string }): string {
  if (/timeout/i.test(error.message)) return "TLS handshake timed out";
  if (/wrong version number|http request|InvalidContentType/i.test(error.message)) {
    return "not a TLS client: plain text on the TLS port";
  }
  return `TLS handshake failed: ${error.message}`;
}
