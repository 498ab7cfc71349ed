/**
 * The least a Deno chat server can hold an idle connection with: accept it,
 * write it a welcome, keep one read pending. `deno task bench` measures its
 * memory per connection beside netchat's, so netchat's figure can be read
 * against the runtime's floor rather than against C.
 *
 *   deno run --allow-net bench/idle_floor.ts PORT
 *
 * @module
 */
const port = Number(Deno.args[0] ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`listening on 127.0.0.1:${listener.addr.port}`);
const welcome = new TextEncoder().encode("* welcome\n");

async function hold(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(256);
  try {
    await conn.write(welcome);
    while ((await conn.read(buffer)) !== null) { /* an idle client sends nothing */ }
  } catch { /* reset: nothing to keep */ }
  conn.close();
}

for await (const conn of listener) hold(conn);
