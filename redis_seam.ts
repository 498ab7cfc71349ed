/**
 * One room across several server processes: a {@linkcode RoomSeam} backed by
 * Redis. `server.ts --redis URL` and `udp_server.ts --redis URL` load it (and
 * node-redis with it) only when that flag is given.
 *
 * Every room event goes through one Redis Stream, `netchat:{ROOM}:events`
 * (XADD with `MAXLEN ~`), and every instance, its own events included, reads
 * that stream in order (XREAD BLOCK from the last ID it applied, on a
 * connection of its own) and applies each event to its room. So every member,
 * on every instance, sees the room's lines in one and the same order: the
 * stream's. Streams and not pub/sub: pub/sub is at-most-once, and Redis
 * disconnects a subscriber past `client-output-buffer-limit pubsub 32mb 8mb
 * 60`, losing what it had not read; a stream keeps its entries, and a reader
 * that remembers its last ID resumes there after a slow spell or a
 * reconnection (https://redis.io/docs/latest/develop/data-types/streams/).
 * Each entry carries its instance and a sequence number, so a reader drops a
 * duplicate (a batch written again after a reply was lost) and counts a gap
 * (entries trimmed before it read them) instead of skipping it in silence.
 *
 * Keys, all with the hash tag `{ROOM}` so that one room lives in one slot of
 * a Redis Cluster:
 * - `events`: the stream; fields `e` (the event, JSON), `i` (instance), `n` (its sequence).
 * - `instance`: INCR gives each instance its number, and blocks of a million member ids.
 * - `members`: a hash, member id to `{name, key, address, instance, since}`: who is in the room.
 * - `instances`: the set of instances; `alive:N`: instance N's heartbeat (SET PX).
 * - `name:KEY`: the id of the member holding the name key KEY (SET only if absent).
 *
 * The race a newcomer must close: it learns who is in the room from
 * `members`, then follows the stream. Every change to `members` is written
 * in the same MULTI/EXEC as the XADD of its event, and the newcomer reads
 * `members` and the stream's last ID in one MULTI/EXEC too: Redis runs a
 * transaction whole, with no other client's command in between
 * (https://redis.io/docs/latest/develop/interactions/transactions/), so the
 * snapshot holds exactly the events up to that ID, and the reader starts
 * after it: no member missed, none counted twice.
 *
 * Bounds: events published while Redis cannot be reached wait in a queue of
 * at most {@linkcode MAX_QUEUED_EVENTS}; past it a line, a private line, a
 * join or a kick is refused (the room tells the sender `ERR room unavailable:
 * line not sent`); leaves and renames are always kept, as there are at most
 * one per member. The stream keeps about {@linkcode STREAM_MAX_LENGTH}
 * entries.
 *
 * An instance that dies (SIGKILL) stops refreshing `alive:N`; within
 * {@linkcode HEARTBEAT_TTL_MS} plus a reaper period, another instance's
 * reaper removes its members and frees their names, all in one Lua script,
 * which runs once whichever instance gets there first.
 *
 * An instance that was only stalled past the TTL (SIGSTOP, a long GC pause,
 * its link to Redis cut) was reaped while alive: the others saw its members
 * leave, and their names were freed. When it resumes, its heartbeat finds it
 * is no longer in `instances` (the heartbeat's SADD adds it back, atomically
 * with the SET of `alive:N`), and it registers its members again in one Lua
 * script: each one missing from `members` is written back and announced as a
 * join (`again`), under its name if that is still free, else under its
 * default name (the member is told `ERR name taken` and renamed). Its
 * members stay connected and are not told the reaper's leaves. Why this and
 * not closing their connections: the members did nothing wrong, and a chat
 * room's users expect a server's hiccup to cost them at most a nickname, not
 * the session (IRC does the same after a netsplit: the split side's users
 * are seen to quit, then to join again). The same script runs when Redis
 * comes back empty, where the others still know the members and announce
 * nothing. After any reconnection, once a TTL and a reaper period have
 * passed (every living instance has registered again by then), the
 * registry is read back into the room (`members`): an instance that died
 * while Redis was away, and which no reaper will ever see, leaves no ghost.
 *
 * @example
 * ```ts ignore
 * import { connectRedisSeam } from "./redis_seam.ts";
 * import { startServer } from "./server.ts";
 * const seam = await connectRedisSeam({ url: "redis://127.0.0.1:6379", room: "main" });
 * const server = startServer({ port: 9090, seam }); // server.shutdown() closes the seam
 * ```
 * @module
 */
import type { RoomEvent, RoomSeam } from "./room.ts";
import { defaultName, nameKey, say } from "./protocol.ts";
import { errorText, maskRedisUrl } from "./cli.ts";

type RedisModule = typeof import("npm:redis@4.7.0");
type RedisClient = ReturnType<RedisModule["createClient"]>;

/** Events waiting for Redis, at most; past it lines, joins and kicks are refused. */
export const MAX_QUEUED_EVENTS = 10_000;
/** The stream is trimmed to about this many entries (`XADD ... MAXLEN ~`). */
export const STREAM_MAX_LENGTH = 100_000;
/** How long an instance's heartbeat key lives without being refreshed. */
export const HEARTBEAT_TTL_MS = 15_000;
/** Member ids an instance takes from Redis at a time: ids are BLOCK * this + 1, 2, 3... */
export const IDS_PER_BLOCK = 1_000_000;
/** How long the first connection to Redis may take. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** The longest wait between two tries to reach Redis again. */
export const MAX_BACKOFF_MS = 2_000;
/** How long `close()` waits for queued events to reach Redis. */
export const CLOSE_FLUSH_MS = 2_000;
const READ_BLOCK_MS = 2_000;
const READ_COUNT = 1_000;
const WRITE_BATCH = 500;

/**
 * Claims a name key for a member: `SET` only if the key is free, and `1`
 * when it is free or already that member's (Redis's `SET ... NX` lock
 * pattern, https://redis.io/docs/latest/commands/set/, made re-entrant).
 */
const CLAIM_SCRIPT = `
local holder = redis.call('GET', KEYS[1])
if holder == false then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
if holder == ARGV[1] then return 1 end
return 0`;

/**
 * Puts the instance counter (KEYS[1]) back to at least ARGV[1]: after Redis
 * restarted empty, INCR would hand a newcomer the number (and the member
 * ids) of an instance still running. Never lowers it, so it is safe beside
 * other instances' INCRs.
 */
const COUNTER_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return 0`;

/** Releases a name key only if this member holds it: compare and delete, as the SET page says. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * The reaper: every instance in `instances` (KEYS[1]) whose heartbeat key
 * is gone is removed, and with it each of its members in `members`
 * (KEYS[2]): out of the registry, its name key freed if it still holds it,
 * and a leave event added to the stream (KEYS[3]). One script, so it runs
 * whole and once (https://redis.io/docs/latest/develop/interactions/programmability/eval-intro/);
 * it touches keys of the room's hash tag only. ARGV: the key prefix, the
 * stream's MAXLEN. Returns the instances reaped.
 */
const REAP_SCRIPT = `
local reaped = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. n) == 0 then
    redis.call('SREM', KEYS[1], n)
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      local m = cjson.decode(all[i + 1])
      if tostring(m.instance) == n then
        redis.call('HDEL', KEYS[2], all[i])
        local holder = ARGV[1] .. 'name:' .. m.key
        if redis.call('GET', holder) == all[i] then redis.call('DEL', holder) end
        local event = cjson.encode({kind = 'leave', cause = 'instance ' .. n .. ' lost',
          member = {id = tonumber(all[i]), name = m.name}})
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'e', event)
      end
    end
    table.insert(reaped, n)
  end
end
return reaped`;

/**
 * Registers this instance's members again (after it was reaped, or Redis
 * restarted empty): each one missing from `members` (KEYS[1]) is written
 * back, its name claimed again if free (else its default name, ARGV[5 + 4i]),
 * and a join marked `again` added to the stream (KEYS[2]). Members still in
 * the registry are left alone, so running it twice announces nothing twice.
 * ARGV: the key prefix, the stream's MAXLEN, the instance, then per member
 * its id, its registry entry (JSON), its default name and that name's key.
 * Returns the ids that lost their name.
 */
const REJOIN_SCRIPT = `
local lost = {}
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 0 then
    local entry = cjson.decode(ARGV[i + 1])
    if entry.name ~= ARGV[i + 2] then
      local holder = redis.call('GET', ARGV[1] .. 'name:' .. entry.key)
      if holder == false or holder == id then
        redis.call('SET', ARGV[1] .. 'name:' .. entry.key, id)
      else
        entry.name = ARGV[i + 2]
        entry.key = ARGV[i + 3]
        table.insert(lost, id)
      end
    end
    redis.call('HSET', KEYS[1], id, cjson.encode(entry))
    local event = cjson.encode({kind = 'join', again = true, instance = tonumber(ARGV[3]),
      member = {id = tonumber(id), name = entry.name}, address = entry.address,
      since = entry.since})
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', event)
  end
end
return lost`;

/** Options of {@linkcode connectRedisSeam}. */
export interface RedisSeamOptions {
  /** `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]` (or `rediss://`); the password is never logged. */
  url: string;
  /** The room's name: its keys are `netchat:{ROOM}:...`. */
  room: string;
  /** Where log lines go (default: stdout). */
  log?: (line: string) => void;
  /** Heartbeat TTL in milliseconds (default {@linkcode HEARTBEAT_TTL_MS}); the tests shorten it. */
  heartbeatTtlMs?: number;
  /** Queue bound (default {@linkcode MAX_QUEUED_EVENTS}). */
  maxQueuedEvents?: number;
  /** How often the heartbeat is refreshed and dead instances are reaped (default: a third of the TTL). */
  reapIntervalMs?: number;
  /** The longest wait between two tries to reach Redis (default {@linkcode MAX_BACKOFF_MS}). */
  maxBackoffMs?: number;
  /** The stream's trim bound (default {@linkcode STREAM_MAX_LENGTH}). */
  streamMaxLength?: number;
}

/** The room's keys (the hash tag `{ROOM}` keeps them in one cluster slot). */
function keysOf(room: string) {
  const prefix = `netchat:{${room}}:`;
  return {
    room,
    prefix,
    events: `${prefix}events`,
    instance: `${prefix}instance`,
    members: `${prefix}members`,
    instances: `${prefix}instances`,
    alive: (instance: number) => `${prefix}alive:${instance}`,
    name: (key: string) => `${prefix}name:${key}`,
  };
}

/**
 * The name of one of an instance's two connections (CLIENT SETNAME), as
 * CLIENT LIST shows it: `netchat:ROOM:N:writer` or `netchat:ROOM:N:reader`
 * (a name may not hold spaces; the room's name never does).
 */
export function linkName(room: string, instance: number, role: "writer" | "reader"): string {
  return `netchat:${room}:${instance}:${role}`;
}

/** A member in the `members` hash. */
interface RegistryEntry {
  name: string;
  key: string;
  address: string;
  instance: number;
  since: number;
}

/**
 * Connects to Redis at `options.url` and joins the room `options.room`:
 * takes an instance number (INCR), registers it with its heartbeat, and
 * takes the snapshot of the room's members with the stream's last ID
 * (MULTI/EXEC). The seam starts reading the stream when the room opens it.
 *
 * Rejects, with the URL masked, if Redis cannot be reached within
 * {@linkcode CONNECT_TIMEOUT_MS} or refuses the password.
 */
export async function connectRedisSeam(options: RedisSeamOptions): Promise<RedisSeam> {
  const log = options.log ?? ((line: string) => console.log(line));
  // Loaded only here, so a server without --redis never fetches the package.
  const { createClient } = await import("npm:redis@4.7.0");
  const maxBackoff = options.maxBackoffMs ?? MAX_BACKOFF_MS;
  const client = createClient({
    url: options.url,
    // Commands fail at once while the link is down: the seam keeps its own bounded queue.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, maxBackoff),
    },
  });
  const reader = client.duplicate();
  let failure: unknown;
  for (const each of [client, reader]) each.on("error", (error: unknown) => failure = error);
  const where = maskRedisUrl(options.url);
  try {
    const connecting = Promise.all([client.connect(), reader.connect()]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(errorText(failure ?? `no answer in ${CONNECT_TIMEOUT_MS} ms`))),
        CONNECT_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([connecting, deadline]);
    } finally {
      clearTimeout(timer);
    }
    const keys = keysOf(options.room);
    const instance = await client.incr(keys.instance);
    await Promise.all([
      client.clientSetName(linkName(options.room, instance, "writer")),
      reader.clientSetName(linkName(options.room, instance, "reader")),
    ]);
    const ttl = options.heartbeatTtlMs ?? HEARTBEAT_TTL_MS;
    await client.multi().set(keys.alive(instance), "1", { PX: ttl }).sAdd(
      keys.instances,
      String(instance),
    )
      .exec();
    const [registry, last] = await client.multi().hGetAll(keys.members)
      .xRevRange(keys.events, "+", "-", { COUNT: 1 }).exec() as unknown as [
        Record<string, string>,
        { id: string }[],
      ];
    const seed = seedOf(registry);
    log(`room ${options.room} on ${where}: instance ${instance}, ${seed.length} members elsewhere`);
    return new RedisSeam({
      client,
      reader,
      keys,
      instance,
      ttl,
      seed,
      lastId: last[0]?.id ?? "0-0",
      log,
      where,
      maxQueued: options.maxQueuedEvents ?? MAX_QUEUED_EVENTS,
      every: options.reapIntervalMs ?? Math.max(50, Math.floor(ttl / 3)),
      maxBackoff,
      maxLength: options.streamMaxLength ?? STREAM_MAX_LENGTH,
    });
  } catch (error) {
    for (const each of [client, reader]) await each.disconnect().catch(() => {});
    throw new Error(`cannot use Redis at ${where}: ${errorText(error)}`);
  }
}

type JoinEvent = Extract<RoomEvent, { kind: "join" }>;

/** The `members` registry as seeded joins: known, not announced. */
function seedOf(registry: Record<string, string>): JoinEvent[] {
  return Object.entries(registry).map(([id, json]) => {
    const entry = JSON.parse(json) as RegistryEntry;
    return {
      kind: "join",
      member: { id: Number(id), name: entry.name },
      address: entry.address,
      instance: entry.instance,
      since: entry.since,
      seeded: true,
    };
  });
}

/** What {@linkcode connectRedisSeam} hands the seam. */
interface SeamParts {
  client: RedisClient;
  reader: RedisClient;
  keys: ReturnType<typeof keysOf>;
  instance: number;
  ttl: number;
  seed: RoomEvent[];
  lastId: string;
  log: (line: string) => void;
  where: string;
  maxQueued: number;
  every: number;
  maxBackoff: number;
  maxLength: number;
}

/** What waits in the queue for Redis: an event, or a name to give back. */
type Outgoing =
  | { event: RoomEvent; seq: number }
  | { release: string; id: number };

/**
 * A room's seam to the other instances, through Redis. Made by
 * {@linkcode connectRedisSeam}; the server closes it once, after its room
 * has shut down.
 */
export class RedisSeam implements RoomSeam {
  readonly instance: number;
  readonly #client: RedisClient;
  readonly #reader: RedisClient;
  readonly #keys: ReturnType<typeof keysOf>;
  readonly #ttl: number;
  readonly #log: (line: string) => void;
  readonly #where: string;
  readonly #maxQueued: number;
  readonly #every: number;
  readonly #maxBackoff: number;
  readonly #maxLength: number;
  #seed: RoomEvent[];
  #apply?: (event: RoomEvent) => void;
  /** The ID of the last stream entry applied: where the next XREAD starts. */
  #lastId: string;
  /** Each instance's last sequence number seen: a duplicate is dropped, a gap counted. */
  readonly #seen = new Map<number, number>();
  #seq = 0;
  /** What waits to be written to Redis, in order; `#writing` while a writer runs. */
  #outbox: Outgoing[] = [];
  #writing?: Promise<void>;
  /** This instance's members as the registry holds them, to write again after Redis lost them. */
  readonly #own = new Map<number, RegistryEntry>();
  #block: number;
  #spareBlock?: number;
  #nextInBlock = 1;
  #timers: ReturnType<typeof setInterval>[] = [];
  #down = false;
  #resyncing = false;
  /** The registry read back once a TTL has passed after a reconnection (#back). */
  #reseed?: ReturnType<typeof setTimeout>;
  #closing?: Promise<void>;
  #closed = false;

  /** Use {@linkcode connectRedisSeam}. */
  constructor(parts: SeamParts) {
    this.instance = parts.instance;
    this.#client = parts.client;
    this.#reader = parts.reader;
    this.#keys = parts.keys;
    this.#ttl = parts.ttl;
    this.#log = parts.log;
    this.#where = parts.where;
    this.#maxQueued = parts.maxQueued;
    this.#every = parts.every;
    this.#maxBackoff = parts.maxBackoff;
    this.#maxLength = parts.maxLength;
    this.#seed = parts.seed;
    this.#lastId = parts.lastId;
    this.#block = parts.instance;
    this.#client.on("error", (error: unknown) => this.#lost(error));
    this.#reader.on("error", (error: unknown) => this.#lost(error));
    // Either link may drop alone (CLIENT KILL): the room is back when both are.
    for (const [link, role] of [[this.#client, "writer"], [this.#reader, "reader"]] as const) {
      link.on("ready", () => {
        // A new connection has no name: given again, so CLIENT LIST still tells whose it is.
        link.clientSetName(linkName(parts.keys.room, this.instance, role)).catch(() => {});
        this.#back();
      });
    }
  }

  open(apply: (event: RoomEvent) => void): void {
    this.#apply = apply;
    // Who was in the room at the snapshot, then the stream from there on.
    for (const event of this.#seed) apply(event);
    this.#seed = [];
    this.#readLoop();
    this.#timers.push(setInterval(() => this.#heartbeat(), this.#every));
    this.#timers.push(setInterval(() => this.#reap(), this.#every));
  }

  /**
   * Queues `event` for the stream; `false` if it was refused because the
   * queue is full (a leave or a rename never is).
   */
  publish(event: RoomEvent): boolean {
    if (this.#closed) return false;
    const refusable = event.kind !== "leave" && event.kind !== "rename";
    if (refusable && this.#outbox.length >= this.#maxQueued) return false;
    if (event.kind === "join") event = { ...event, since: Date.now() };
    this.#outbox.push({ event, seq: ++this.#seq });
    this.#writing ??= this.#write();
    return true;
  }

  /** Claims a name key room-wide (CLAIM_SCRIPT); rejects while Redis cannot be reached. */
  async claimName(key: string, id: number): Promise<boolean> {
    const granted = await this.#client.eval(CLAIM_SCRIPT, {
      keys: [this.#keys.name(key)],
      arguments: [String(id)],
    });
    return granted === 1;
  }

  /** Gives a name key back, in order with the events (RELEASE_SCRIPT runs only for the holder). */
  releaseName(key: string, id: number): void {
    if (this.#closed) return;
    this.#outbox.push({ release: key, id });
    this.#writing ??= this.#write();
  }

  /** A room-wide unique id: BLOCK * {@linkcode IDS_PER_BLOCK} + a counter, a new block when one runs out. */
  newId(): number {
    if (this.#nextInBlock === IDS_PER_BLOCK / 2 && this.#spareBlock === undefined) {
      this.#client.incr(this.#keys.instance).then((block) => this.#spareBlock = block)
        .catch((error) => this.#log(`redis: cannot take a block of ids: ${errorText(error)}`));
    }
    if (this.#nextInBlock >= IDS_PER_BLOCK) {
      if (this.#spareBlock === undefined) throw new Error("no member ids left: Redis unreachable");
      this.#block = this.#spareBlock;
      this.#spareBlock = undefined;
      this.#nextInBlock = 1;
    }
    return this.#block * IDS_PER_BLOCK + this.#nextInBlock++;
  }

  /**
   * Waits up to {@linkcode CLOSE_FLUSH_MS} for the queue to reach Redis,
   * then ends the heartbeat and reaps this instance at once (any member
   * whose leave did not get through leaves now), and disconnects. Calling
   * it again returns the same promise.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      for (const timer of this.#timers) clearInterval(timer);
      clearTimeout(this.#reseed);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#writing,
        new Promise((resolve) => timer = setTimeout(resolve, CLOSE_FLUSH_MS)),
      ]);
      clearTimeout(timer);
      this.#closed = true;
      const left = this.#outbox.length;
      if (left > 0) this.#log(`redis: ${left} events not written before closing`);
      try {
        await this.#client.del(this.#keys.alive(this.instance));
        await this.#reapNow();
      } catch (error) {
        this.#log(`redis: could not leave the room cleanly: ${errorText(error)}`);
      }
      for (const each of [this.#reader, this.#client]) await each.disconnect().catch(() => {});
    })();
  }

  // ---- the stream, both ways

  /** Applies the stream's entries in order, from the last ID applied, until the seam closes. */
  async #readLoop(): Promise<void> {
    let backoff = 50;
    while (!this.#closed) {
      let reply;
      try {
        reply = await this.#reader.xRead({ key: this.#keys.events, id: this.#lastId }, {
          BLOCK: READ_BLOCK_MS,
          COUNT: READ_COUNT,
        });
        backoff = 50;
      } catch (error) {
        if (this.#closed) return;
        this.#lost(error);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.#maxBackoff);
        continue;
      }
      for (const { messages } of reply ?? []) {
        for (const { id, message } of messages) {
          this.#lastId = id;
          this.#take(message);
        }
      }
    }
  }

  /** One stream entry: dropped if it is a duplicate, a gap before it told, then applied. */
  #take(fields: Record<string, string>): void {
    const from = Number(fields.i);
    const seq = Number(fields.n);
    if (from > 0 && seq > 0) {
      const last = this.#seen.get(from);
      if (last !== undefined && seq <= last) return; // written twice: a retried batch
      if (last !== undefined && seq > last + 1) {
        const missed = seq - last - 1;
        this.#log(`redis: missed ${missed} events of instance ${from} (trimmed from the stream)`);
        this.#apply!({ kind: "notice", line: say.missedEvents(missed, from) });
        // Joins, leaves or renames may be among them: who is in the room is read again.
        this.#resync("after a gap");
      }
      this.#seen.set(from, seq);
    }
    this.#apply!(JSON.parse(fields.e) as RoomEvent);
  }

  /**
   * Reads who is in the room from the registry and hands it to the room as
   * a `members` event, after events were missed. The registry is newer than
   * the entries still to be read; those are joins, leaves and renames applied
   * on top, each of which sets a member's state, so the room ends up as the
   * registry stands. One resync at a time: a second gap meanwhile is covered.
   */
  #resync(why = "after a gap"): void {
    if (this.#resyncing) return;
    this.#resyncing = true;
    this.#client.hGetAll(this.#keys.members).then((registry) => {
      if (this.#closed) return;
      const members = seedOf(registry);
      this.#log(`redis: read the room's ${members.length} members from the registry ${why}`);
      this.#apply!({ kind: "members", members });
    }, (error) => this.#log(`redis: cannot read the room's members: ${errorText(error)}`))
      .finally(() => this.#resyncing = false);
  }

  /**
   * Writes the queue to Redis, a batch per MULTI/EXEC: each event's XADD
   * and its change to the `members` registry land together (the module
   * header says why). A failed batch is tried again after a backoff; its
   * sequence numbers let readers drop it if it had in fact been written.
   */
  async #write(): Promise<void> {
    let backoff = 50;
    while (this.#outbox.length > 0 && !this.#closed) {
      const batch = this.#outbox.slice(0, WRITE_BATCH);
      const multi = this.#client.multi();
      for (const item of batch) {
        if ("release" in item) {
          multi.eval(RELEASE_SCRIPT, {
            keys: [this.#keys.name(item.release)],
            arguments: [String(item.id)],
          });
          continue;
        }
        multi.xAdd(this.#keys.events, "*", {
          e: JSON.stringify(item.event),
          i: String(this.instance),
          n: String(item.seq),
        }, { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: this.#maxLength } });
        this.#register(multi, item.event);
      }
      try {
        await multi.exec();
        this.#outbox.splice(0, batch.length);
        backoff = 50;
      } catch (error) {
        this.#lost(error);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.#maxBackoff);
      }
    }
    this.#writing = undefined;
  }

  /** Adds to `multi` the registry change an event of this instance makes. */
  #register(multi: ReturnType<RedisClient["multi"]>, event: RoomEvent): void {
    if (event.kind === "join") {
      const entry: RegistryEntry = {
        name: event.member.name,
        key: nameKey(event.member.name),
        address: event.address ?? "?",
        instance: this.instance,
        since: event.since ?? Date.now(),
      };
      this.#own.set(event.member.id, entry);
      multi.hSet(this.#keys.members, String(event.member.id), JSON.stringify(entry));
    } else if (event.kind === "rename") {
      const entry = this.#own.get(event.member.id);
      if (entry === undefined) return;
      entry.name = event.member.name;
      entry.key = nameKey(entry.name);
      multi.hSet(this.#keys.members, String(event.member.id), JSON.stringify(entry));
    } else if (event.kind === "leave") {
      this.#own.delete(event.member.id);
      multi.hDel(this.#keys.members, String(event.member.id));
    }
  }

  // ---- liveness: heartbeat, reaper, reconnection

  /**
   * Renews `alive:N`, and adds this instance to `instances` in the same
   * MULTI/EXEC: if it was not there any more, a reaper took it for dead (or
   * Redis restarted empty), and its members are registered again.
   */
  #heartbeat(): void {
    this.#client.multi().set(this.#keys.alive(this.instance), "1", { PX: this.#ttl })
      .sAdd(this.#keys.instances, String(this.instance)).exec()
      .then((replies) => {
        if (Number(replies[1]) !== 1 || this.#closed) return;
        this.#log(
          `redis: instance ${this.instance} was taken for dead: registering its members again`,
        );
        return this.#rejoin();
      })
      .catch((error) => this.#lost(error));
  }

  /** Runs REJOIN_SCRIPT for this instance's members; those that lost their name keep the default. */
  async #rejoin(): Promise<void> {
    const args = [this.#keys.prefix, String(this.#maxLength), String(this.instance)];
    for (const [id, entry] of this.#own) {
      const fallback = defaultName(id);
      args.push(String(id), JSON.stringify(entry), fallback, nameKey(fallback));
    }
    if (args.length === 3) return;
    const lost = await this.#client.eval(REJOIN_SCRIPT, {
      keys: [this.#keys.members, this.#keys.events],
      arguments: args,
    }) as string[];
    for (const id of lost) {
      const entry = this.#own.get(Number(id));
      if (entry === undefined) continue;
      this.#log(`redis: member ${id} lost the name ${entry.name} while this instance was away`);
      entry.name = defaultName(Number(id));
      entry.key = nameKey(entry.name);
    }
  }

  #reap(): void {
    this.#reapNow().catch((error) => this.#lost(error));
  }

  async #reapNow(): Promise<void> {
    const reaped = await this.#client.eval(REAP_SCRIPT, {
      keys: [this.#keys.instances, this.#keys.members, this.#keys.events],
      arguments: [this.#keys.prefix, String(this.#maxLength)],
    }) as string[];
    for (const instance of reaped) {
      if (Number(instance) !== this.instance) {
        this.#log(`redis: instance ${instance} stopped its heartbeat: its members have left`);
      }
    }
  }

  /** The link to Redis failed: said once per outage, in the log and to the room's members. */
  #lost(error: unknown): void {
    if (this.#closed || this.#down) return;
    this.#down = true;
    this.#log(`redis: lost ${this.#where} (${errorText(error)}); reconnecting`);
    this.#apply?.({ kind: "notice", line: say.roomDown });
  }

  /**
   * The link is back: said so, and this instance's registration written
   * again, in case Redis restarted empty or the others reaped it meanwhile
   * (its heartbeat, its set entry, its members and their names). One TTL and
   * a reaper period later, when every living instance has done the same, the
   * registry is read back into the room: members of an instance that died
   * meanwhile, which no reaper will remove, are gone from it.
   */
  async #back(): Promise<void> {
    if (!this.#down || this.#closed || !this.#client.isReady || !this.#reader.isReady) return;
    this.#down = false;
    this.#log(`redis: reconnected to ${this.#where}`);
    this.#apply?.({ kind: "notice", line: say.roomBack });
    // The highest number this instance took from the counter: its own, or a block of ids.
    const highest = Math.max(this.instance, this.#block, this.#spareBlock ?? 0);
    try {
      await this.#client.multi()
        .eval(COUNTER_SCRIPT, { keys: [this.#keys.instance], arguments: [String(highest)] })
        .set(this.#keys.alive(this.instance), "1", { PX: this.#ttl })
        .sAdd(this.#keys.instances, String(this.instance))
        .exec();
      await this.#rejoin();
    } catch (error) {
      this.#lost(error);
    }
    clearTimeout(this.#reseed);
    this.#reseed = setTimeout(() => {
      if (!this.#closed && !this.#down) this.#resync("after reconnecting");
    }, this.#ttl + this.#every);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
