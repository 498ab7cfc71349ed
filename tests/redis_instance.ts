/**
 * A test fixture: one server instance sharing a room over Redis, as its own
 * process, so a test can SIGKILL or SIGSTOP it. It is `server.ts --redis`
 * with the seam's timings given on the command line (the heartbeat TTL, the
 * reaper's period, the stream's trim bound), which server.ts keeps at their
 * defaults.
 *
 * Usage: deno run --allow-net tests/redis_instance.ts URL ROOM TTL_MS EVERY_MS MAXLEN
 * It logs `listening on 127.0.0.1:PORT (tcp, chat)` once it serves.
 * @module
 */
import { connectRedisSeam } from "../redis_seam.ts";
import { startServer } from "../server.ts";

const [url, room, ttl, every, maxLength] = Deno.args;
const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
const seam = await connectRedisSeam({
  url,
  room,
  log,
  heartbeatTtlMs: Number(ttl),
  reapIntervalMs: Number(every),
  streamMaxLength: Number(maxLength),
  maxBackoffMs: 200,
});
const server = startServer({ host: "127.0.0.1", port: 0, seam, log });
log(`listening on 127.0.0.1:${server.addr.port} (tcp, chat) instance=${seam.instance}`);
