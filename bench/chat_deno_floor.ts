// chat_deno_floor.ts - the least a Deno chat broker can do: read into 64 KiB, cut at the last
// "\n", write that block to every other connection (one write op each), no names, no checks,
// no queues beyond awaiting each write. The floor for netchat's chat mode under fan-out.
// usage: deno run --allow-net chat_deno_floor.ts PORT
const port = Number(Deno.args[0] ?? 19004);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const conns = new Set<Deno.TcpConn>();
console.log("listening", port);

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function handle(conn: Deno.TcpConn) {
  conn.setNoDelay(true);
  conns.add(conn);
  const buf = new Uint8Array(64 * 1024);
  let carry = new Uint8Array(0);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const data = new Uint8Array(carry.length + n);
      data.set(carry);
      data.set(buf.subarray(0, n), carry.length);
      const end = data.lastIndexOf(10) + 1;
      carry = data.slice(end);
      if (end === 0) continue;
      const block = data.subarray(0, end);
      for (const other of conns) if (other !== conn) writeAll(other, block).catch(() => {});
    }
  } catch {
    // peer reset
  } finally {
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
for await (const conn of listener) handle(conn);
