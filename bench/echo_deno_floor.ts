// echo_deno_floor.ts - the least a Deno echo server can do: no framing, no checks, a 64 KiB
// read buffer, no-delay sockets, partial writes handled. The floor for netchat's echo mode.
// usage: deno run --allow-net echo_deno_floor.ts PORT
const port = Number(Deno.args[0] ?? 19003);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log("listening", port);

async function handle(conn: Deno.TcpConn) {
  conn.setNoDelay(true);
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // peer reset: just drop the connection
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
for await (const conn of listener) handle(conn);
