/**
 * Tests of room.ts with fake members: no sockets, a clock the test sets, and
 * a seam the test can hold events in.
 */
import assert from "node:assert/strict";
import { prng } from "./stress_scenarios.ts";
import {
  ANNOUNCE_LIMIT,
  LocalSeam,
  type Member,
  type MemberLink,
  monotonicMilliseconds,
  Room,
  type RoomEvent,
  type RoomOptions,
  type RoomSeam,
} from "../room.ts";
import { nameKey, say } from "../protocol.ts";

const decoder = new TextDecoder();

/** A member's end of the room: records every line and how it left. */
class FakeLink implements MemberLink {
  readonly address: string;
  lines: string[] = [];
  leaves: { cause: string; notice?: string }[] = [];
  paced = false;
  /** Runs on each delivery, after the line is recorded. */
  onDeliver?: (line: string) => void;

  constructor(address = "127.0.0.1:6000") {
    this.address = address;
  }

  deliver(line: Uint8Array): void {
    const text = decoder.decode(line);
    assert.ok(text.endsWith("\n"), "a line is delivered with its newline");
    this.lines.push(text.slice(0, -1));
    this.onDeliver?.(text.slice(0, -1));
  }

  left(cause: string, notice: Uint8Array | undefined): void {
    this.leaves.push({ cause, notice: notice && decoder.decode(notice).slice(0, -1) });
  }

  /** Returns the lines so far and forgets them. */
  take(): string[] {
    const lines = this.lines;
    this.lines = [];
    return lines;
  }
}

/** A room with a clock the test moves and a log it reads. */
function testRoom(options: Partial<RoomOptions> = {}) {
  const clock = { now: 0 };
  const logs: string[] = [];
  const room = new Room({
    noun: "client",
    clock: () => clock.now,
    log: (line) => logs.push(line),
    ...options,
  });
  let port = 5000;
  /** Joins a fake member (renamed to `name` if given) and clears what it was told. */
  function add(name?: string): { member: Member; link: FakeLink } {
    const link = new FakeLink(`127.0.0.1:${port++}`);
    const member = room.join(link)!;
    if (name !== undefined) room.hear(member, `/nick ${name}`);
    link.take();
    return { member, link };
  }
  return { room, clock, logs, add };
}

Deno.test("Room welcomes a newcomer by its default name and tells only the others", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const link = new FakeLink();
  const member = room.join(link)!;
  assert.equal(member.name, "user2");
  assert.deepEqual(link.lines, [say.welcome("user2")]);
  assert.deepEqual(alice.link.lines, [say.joined("user2")]);
  assert.equal(room.size, 2);
});

Deno.test("Room relays a line to every other member, never back, and an empty one to nobody", () => {
  const { room, logs, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  const carol = add("carol");
  alice.link.take();
  bob.link.take();
  room.hear(alice.member, "你好 👋🏽");
  room.hear(alice.member, "");
  assert.deepEqual(bob.link.lines, ["<alice> 你好 👋🏽"]);
  assert.deepEqual(carol.link.lines, ["<alice> 你好 👋🏽"]);
  assert.deepEqual(alice.link.lines, []);
  assert.equal(logs.at(-1), "<alice> 你好 👋🏽");
});

Deno.test("Room /nick renames, tells everyone, and refuses taken, reserved and invalid names", () => {
  const { room, logs, add } = testRoom();
  const alice = add();
  const bob = add("bob");
  alice.link.take();
  room.hear(alice.member, "/nick alice");
  assert.deepEqual(alice.link.take(), ["* user1 is now alice"]);
  assert.deepEqual(bob.link.take(), ["* user1 is now alice"]);
  assert.match(logs.at(-1)!, /^renamed 127\.0\.0\.1:5000 id=1 user1 -> alice$/);
  for (
    const [name, answer] of [
      ["", say.nickUsage],
      ["BOB", say.nameTaken("BOB")],
      ["b0b", say.nameTaken("b0b")],
      ["ｂｏｂ", "ERR invalid name: use 1-32 letters, digits, _ or -"],
      ["server", "ERR name reserved: server"],
      ["user7", "ERR name reserved: user7"],
      ["a b", "ERR invalid name: use 1-32 letters, digits, _ or -"],
    ]
  ) {
    room.hear(alice.member, `/nick ${name}`);
    assert.deepEqual(alice.link.take(), [answer], `/nick ${name}`);
  }
  assert.deepEqual(bob.link.take(), [], "a refused name is not announced");
  // Renaming gives the old name back: bob can take "alice" once alice is "alicia".
  room.hear(alice.member, "/nick alicia");
  room.hear(bob.member, "/nick Alice");
  assert.equal(bob.member.name, "Alice");
  // A change of case is a rename to one's own name, not a clash.
  room.hear(bob.member, "/nick ALICE");
  assert.equal(bob.member.name, "ALICE");
});

Deno.test("Room /list shows each member like CLIENT LIST, then the count in the room's noun", () => {
  const { room, clock, add } = testRoom({ noun: "peer" });
  const alice = add("alice");
  clock.now = 12_500;
  add("bob");
  clock.now = 15_000;
  alice.link.take();
  room.hear(alice.member, "/list");
  assert.deepEqual(alice.link.take(), [
    "* id=1 name=alice addr=127.0.0.1:5000 age=15 idle=15",
    "* id=2 name=bob addr=127.0.0.1:5001 age=2 idle=2",
    "* 2 peers",
  ]);
});

Deno.test("Room /help lists the commands; an unknown command is an error", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  room.hear(alice.member, "/help");
  assert.deepEqual(alice.link.take(), say.help);
  room.hear(alice.member, "/FLY away");
  assert.deepEqual(alice.link.take(), [say.unknownCommand("/fly")]);
});

Deno.test("Room /quit: the member leaves once, told bye, the others told why, its name freed", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  room.hear(alice.member, "/quit");
  room.leave(alice.member, "eof"); // the FIN that follows changes nothing
  assert.deepEqual(alice.link.leaves, [{ cause: "quit", notice: say.bye }]);
  assert.deepEqual(bob.link.take(), [say.left("alice", "quit")]);
  assert.equal(room.size, 1);
  room.hear(alice.member, "still here?");
  assert.deepEqual(bob.link.take(), [], "a member that left is not heard");
  room.hear(bob.member, "/nick alice");
  assert.equal(bob.member.name, "alice");
});

Deno.test("Room announces joins, leaves and renames only up to ANNOUNCE_LIMIT members", () => {
  const { room, add } = testRoom({ maxMembers: 1000 });
  const first = add("first");
  const members = [first];
  for (let i = 1; i < ANNOUNCE_LIMIT; i++) members.push(add());
  // Each later arrival was announced to the first member, up to the limit.
  assert.equal(first.link.take().filter((l) => l.endsWith(" joined")).length, ANNOUNCE_LIMIT - 1);
  const over = add();
  assert.equal(first.link.take().length, 0, "the 101st join is not announced");
  room.hear(over.member, "/nick crowd");
  assert.deepEqual(over.link.take(), ["* user101 is now crowd"], "the renamer is still told");
  assert.equal(first.link.take().length, 0);
  room.leave(over.member, "eof");
  assert.deepEqual(first.link.take(), [say.left("crowd", "eof")], "100 left: announced");
});

Deno.test("Room: a crowd arriving costs the announce limit's notices, not N squared", () => {
  const { add } = testRoom({ maxMembers: 1000 });
  const members = Array.from({ length: 300 }, () => add());
  // add() clears what each was told on joining; count what came after.
  const joins = members.flatMap((m) => m.link.lines).filter((l) => l.endsWith(" joined"));
  // Member k (1-based) hears of members k+1..100: 99 + 98 + ... + 1.
  assert.equal(joins.length, (ANNOUNCE_LIMIT * (ANNOUNCE_LIMIT - 1)) / 2);
});

Deno.test("Room refuses a newcomer past maxMembers with ERR server full", () => {
  const { room, logs, add } = testRoom({ maxMembers: 2, noun: "peer" });
  add();
  add();
  const link = new FakeLink("127.0.0.1:7000");
  assert.equal(room.join(link), undefined);
  assert.deepEqual(link.lines, [say.serverFull(2, "peer")]);
  assert.equal(logs.at(-1), "refused 127.0.0.1:7000: server full (max 2 peers)");
  assert.equal(room.size, 2);
});

Deno.test("Room console: a line to all, /kick by id, /list, /quit, and errors", () => {
  let quits = 0;
  const { room, logs, add } = testRoom({ onQuit: () => quits++ });
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  room.console("hello all\x1b[2J");
  assert.deepEqual(alice.link.take(), ["<server> hello all"]);
  assert.deepEqual(bob.link.take(), ["<server> hello all"]);
  room.console("/kick");
  assert.equal(logs.at(-1), "usage: /kick ID or NAME (see /list)");
  room.console("/kick x1");
  assert.equal(logs.at(-1), "no client named x1 (see /list)");
  room.console("/kick 99");
  assert.equal(logs.at(-1), "no client with id 99 (see /list)");
  room.console(`/kick ${alice.member.id}`);
  assert.deepEqual(alice.link.leaves, [{ cause: "kicked", notice: say.kicked }]);
  assert.deepEqual(bob.link.take(), [say.left("alice", "kicked")]);
  room.console("/list");
  assert.deepEqual(logs.slice(-2), [
    "* id=2 name=bob addr=127.0.0.1:5001 age=0 idle=0",
    "* 1 client",
  ]);
  room.console("/reboot");
  assert.equal(logs.at(-1), "unknown console command /reboot (try /help)");
  room.console("/quit");
  assert.equal(quits, 1);
});

Deno.test("Room console /kick NAME finds the name as the room does: any spelling with its key, default names too", () => {
  const { room, logs, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  const carol = add(); // user3: a default name, not in the name index
  const zhang = add("张伟");
  const jose = add("Jos\u00e9");
  bob.link.take();
  const logged = logs.length;
  const kick = (typed: string, who: { member: Member; link: FakeLink }) => {
    room.console(`/kick ${typed}`);
    assert.deepEqual(who.link.leaves, [{ cause: "kicked", notice: say.kicked }], typed);
    assert.equal(who.member.gone, true, typed);
  };
  kick("A1ICE", alice); // I, 1 and l are one letter to nameKey
  kick("USER3", carol);
  kick("张伟", zhang);
  kick("Jose\u0301", jose); // decomposed: the same name
  assert.deepEqual(logs.slice(logged), [], "a kick logs no error");
  assert.deepEqual(
    bob.link.take(),
    ["alice", "user3", "张伟", "Jos\u00e9"].map((name) => say.left(name, "kicked")),
  );
  assert.equal(room.size, 1);

  room.console("/kick alice");
  assert.equal(logs.at(-1), "no client named alice (see /list)");
  room.console("/kick user2"); // bob's default name is gone since he took a name
  assert.equal(logs.at(-1), "no client named user2 (see /list)");
  room.console("/kick  \x1b[31m ");
  assert.equal(logs.at(-1), "usage: /kick ID or NAME (see /list)");
  assert.equal(bob.member.gone, false);
});

Deno.test("Room console /kick with a number takes it as an id, even when a member is named so", () => {
  const { room, logs, add } = testRoom();
  const alice = add("alice");
  const digits = add("7"); // a valid name, made of digits
  room.console("/kick 7");
  assert.equal(logs.at(-1), "no client with id 7 (see /list)");
  assert.equal(digits.member.gone, false);
  room.console(`/kick ${digits.member.id}`);
  assert.equal(digits.member.gone, true);
  assert.equal(alice.member.gone, false);
});

Deno.test("Room console /help lists every console command, in the room's noun and mode", () => {
  const chat = testRoom({ noun: "peer" });
  chat.room.console("/HELP");
  assert.deepEqual(chat.logs.map((line) => line.split(/\s{2,}/)[0]), [
    "* TEXT",
    "* //TEXT",
    "* /list",
    "* /kick ID or NAME",
    "* /quit",
    "* /help",
  ]);
  assert.match(chat.logs[0], /every peer as <server> TEXT$/);
  assert.match(chat.logs[3], / forget one /);

  const echo = testRoom({ chat: false });
  echo.room.console("/help");
  assert.equal(echo.logs[0], "* (echo mode: lines typed here are not sent to clients)");
  assert.deepEqual(echo.logs.slice(1).map((line) => line.split(/\s{2,}/)[0]), [
    "* /list",
    "* /kick ID or NAME",
    "* /quit",
    "* /help",
  ]);
  assert.match(echo.logs[2], / disconnect one /);
});

Deno.test("Room idle sweep: only members silent for the timeout leave, not paced ones", () => {
  const { room, clock, add } = testRoom({ idleTimeoutMs: 1000 });
  const quiet = add("quiet");
  const talker = add("talker");
  const paced = add("paced");
  paced.link.paced = true;
  quiet.link.take();
  clock.now = 900;
  room.touch(talker.member);
  clock.now = 1000;
  room.sweep();
  assert.deepEqual(quiet.link.leaves, [{ cause: "idle timeout", notice: say.idle }]);
  assert.equal(talker.link.leaves.length, 0);
  assert.deepEqual(paced.link.leaves, [], "flood control holds its lines: it is not idle");
  assert.ok(talker.link.take().includes(say.left("quiet", "idle timeout")));
  clock.now = 1899;
  room.sweep();
  assert.equal(talker.link.leaves.length, 0);
  clock.now = 1900;
  room.sweep();
  assert.equal(talker.link.leaves[0].cause, "idle timeout");
});

Deno.test("Room: a member dropped in the middle of a broadcast leaves after it", () => {
  const { room, add } = testRoom();
  const before = add("before");
  const slow = add("slow");
  const after = add("after");
  const sender = add("sender");
  for (const m of [before, slow, after]) m.link.take();
  // The slow member's transport drops it on its first line, from inside deliver().
  slow.link.onDeliver = () => room.leave(slow.member, "slow consumer");
  room.hear(sender.member, "one");
  // Everyone else got the line, then the leave: nobody missed it, nothing came twice.
  for (const m of [before, after, sender]) {
    const expected = m === sender ? [] : ["<sender> one"];
    assert.deepEqual(m.link.take(), [...expected, say.left("slow", "slow consumer")]);
  }
  assert.deepEqual(slow.link.leaves, [{ cause: "slow consumer", notice: undefined }]);
  assert.deepEqual(slow.link.take(), ["<sender> one"]);
  assert.equal(room.size, 3);
  room.hear(sender.member, "two");
  assert.deepEqual(slow.link.take(), [], "no line reaches a member that left");
  assert.deepEqual(after.link.take(), ["<sender> two"]);
});

Deno.test("Room shutdown: each member gets the notice, no leave is announced", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  room.shutdown();
  for (const m of [alice, bob]) {
    assert.deepEqual(m.link.leaves, [{ cause: "shutdown", notice: say.shuttingDown }]);
    assert.deepEqual(m.link.take(), []);
  }
  assert.equal(room.size, 0);
});

Deno.test("Room without chat (echo) is a registry only: no welcome, notice or relay", () => {
  const { room, logs, add } = testRoom({ chat: false });
  const link = new FakeLink();
  const member = room.join(link)!;
  const other = add();
  assert.deepEqual(link.lines, []);
  room.console("hi");
  assert.equal(logs.at(-1), "echo mode: console lines are not sent to clients");
  room.console(`/kick ${member.id}`);
  assert.deepEqual(link.leaves, [{ cause: "kicked", notice: undefined }]);
  assert.deepEqual(other.link.lines, []);
});

/** A seam that holds published events until the test lets them through, as a remote room would. */
class HeldSeam implements RoomSeam {
  published: RoomEvent[] = [];
  releases: string[] = [];
  /** Name keys held by members of other processes. */
  takenElsewhere = new Set<string>();
  #local = new LocalSeam();
  #apply?: (event: RoomEvent) => void;

  open(apply: (event: RoomEvent) => void): void {
    this.#apply = apply;
  }
  publish(event: RoomEvent): void {
    this.published.push(event);
  }
  /** Delivers every held event to the room, in order. */
  deliverHeld(): void {
    for (const event of this.published.splice(0)) this.#apply!(event);
  }
  /** An event from another process's room. */
  arrive(event: RoomEvent): void {
    this.#apply!(event);
  }
  claimName(key: string, id: number): boolean {
    return !this.takenElsewhere.has(key) && this.#local.claimName(key, id);
  }
  releaseName(key: string, id: number): void {
    this.releases.push(key);
    this.#local.releaseName(key, id);
  }
}

Deno.test("Room events pass only through the seam: the room acts when the seam delivers", () => {
  const seam = new HeldSeam();
  const { room, add } = testRoom({ seam });
  const alice = add();
  const bob = add();
  seam.deliverHeld();
  alice.link.take();
  bob.link.take();
  room.hear(alice.member, "hello");
  assert.deepEqual(seam.published, [{
    kind: "line",
    from: { id: 1, name: "user1" },
    text: "hello",
  }]);
  assert.deepEqual(bob.link.lines, [], "nothing is delivered before the seam brings it back");
  seam.deliverHeld();
  assert.deepEqual(bob.link.take(), ["<user1> hello"]);
  room.hear(bob.member, "/nick bob");
  room.leave(alice.member, "eof");
  room.console(`/kick ${bob.member.id}`);
  assert.deepEqual(seam.published.map((e) => e.kind), ["rename", "leave", "kick"]);
  assert.equal(bob.link.leaves.length, 0, "a kick too waits for the seam");
  seam.deliverHeld();
  assert.deepEqual(bob.link.leaves.map((l) => l.cause), ["kicked"]);
  assert.ok(seam.releases.includes("bob"), "a member's name is given back when it leaves");
});

Deno.test("Room takes events from other processes and honours their name claims", () => {
  const seam = new HeldSeam();
  const { room, add } = testRoom({ seam });
  const alice = add();
  seam.deliverHeld();
  alice.link.take();
  seam.arrive({ kind: "join", member: { id: 900, name: "remote" } });
  seam.arrive({ kind: "line", from: { id: 900, name: "remote" }, text: "from afar" });
  seam.arrive({ kind: "kick", id: 12345 }); // a member of another process: nothing here
  assert.deepEqual(alice.link.take(), ["* remote joined", "<remote> from afar"]);
  seam.takenElsewhere.add(nameKey("Remote"));
  room.hear(alice.member, "/nick Remote");
  assert.deepEqual(alice.link.take(), [say.nameTaken("Remote")]);
  assert.deepEqual(seam.published, []);
});

Deno.test("LocalSeam: one holder per name; only the holder's release frees it", () => {
  const seam = new LocalSeam();
  assert.ok(seam.claimName("alice", 1));
  assert.ok(seam.claimName("alice", 1), "claiming one's own name again is fine");
  assert.ok(!seam.claimName("alice", 2));
  seam.releaseName("alice", 2);
  assert.ok(!seam.claimName("alice", 2), "a release by somebody else changes nothing");
  seam.releaseName("alice", 1);
  assert.ok(seam.claimName("alice", 2));
});

Deno.test("Room relays a line beginning with // as text without its first /, from a member and the console", () => {
  let quits = 0;
  const { room, add } = testRoom({ onQuit: () => quits++ });
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  for (const line of ["//quit", "//nick hijacked", "//list", "//", "///"]) {
    room.hear(alice.member, line);
  }
  assert.deepEqual(bob.link.take(), [
    "<alice> /quit",
    "<alice> /nick hijacked",
    "<alice> /list",
    "<alice> /",
    "<alice> //",
  ]);
  // None of them ran as a command: alice is still here, named alice, and was told nothing.
  assert.equal(alice.member.gone, false);
  assert.equal(alice.member.name, "alice");
  assert.deepEqual(alice.link.take(), []);
  room.console("//quit");
  room.console(`//kick ${bob.member.id}`);
  assert.deepEqual(alice.link.take(), ["<server> /quit", `<server> /kick ${bob.member.id}`]);
  assert.equal(quits, 0);
  assert.equal(bob.member.gone, false);
  assert.equal(room.size, 2);
});

Deno.test("Room: a control character or escape sequence before a / makes the line text", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  for (
    const line of ["\x01/nick EVIL", "\x1b[0m/quit", "\u2028/quit", "\r/list", "\u009b1m/help"]
  ) {
    room.hear(alice.member, line);
  }
  assert.deepEqual(bob.link.take(), [
    "<alice> /nick EVIL",
    "<alice> /quit",
    "<alice> /quit",
    "<alice> /list",
    "<alice> /help",
  ]);
  assert.equal(alice.member.name, "alice");
  assert.deepEqual(alice.link.take(), []);
  assert.equal(alice.member.gone, false);
});

Deno.test("Room /msg reaches NAME alone, marked private; the sender hears of a missing NAME", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  const carol = add();
  for (const m of [alice, bob]) m.link.take();
  room.hear(alice.member, "/msg BOB  hello 你好 🇧🇪");
  room.hear(alice.member, `/msg ${carol.member.name} hi user`);
  assert.deepEqual(bob.link.take(), ["<alice> (private) hello 你好 🇧🇪"]);
  assert.deepEqual(carol.link.take(), ["<alice> (private) hi user"]);
  assert.deepEqual(alice.link.take(), []);
  for (
    const [line, answer] of [
      ["/msg dave hi", say.noSuchName("dave")],
      ["/msg user99 hi", say.noSuchName("user99")],
      ["/msg bob", say.msgUsage],
      ["/msg", say.msgUsage],
      ["/me", say.meUsage],
    ]
  ) {
    room.hear(alice.member, line);
    assert.deepEqual(alice.link.take(), [answer], line);
  }
  assert.deepEqual(bob.link.take(), []);
  assert.deepEqual(carol.link.take(), []);
});

Deno.test("Room /me shows an action to the others as * name text", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  room.hear(alice.member, "/me waves \x1b[31m👋🏽");
  assert.deepEqual(bob.link.take(), ["* alice waves 👋🏽"]);
  assert.deepEqual(alice.link.take(), []);
});

Deno.test("Room answers a rename to the name one has, without announcing it", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const bob = add("bob");
  alice.link.take();
  room.hear(alice.member, "/nick alice");
  assert.deepEqual(alice.link.take(), [say.alreadyNamed("alice")]);
  assert.deepEqual(bob.link.take(), []);
  room.hear(alice.member, "/nick Alice");
  assert.deepEqual(bob.link.take(), ["* alice is now Alice"], "a new spelling is a rename");
});

Deno.test("monotonicMilliseconds() follows performance.now() within a millisecond and never goes back", () => {
  let last = -Infinity;
  const until = performance.now() + 30;
  let reads = 0;
  while (performance.now() < until) {
    const before = Math.floor(performance.now());
    const value = monotonicMilliseconds();
    const after = Math.floor(performance.now());
    assert.ok(value >= last, `went back from ${last} to ${value}`);
    assert.ok(Number.isInteger(value));
    // Read at most one millisecond of Date.now() ago: never further behind than that.
    assert.ok(value >= before - 2 && value <= after, `${value} outside [${before - 2}, ${after}]`);
    last = value;
    reads++;
  }
  assert.ok(reads > 1000);
});

/** A TCP-like link: takes blocks of lines too, and records each delivery as it came. */
class BlockLink extends FakeLink {
  deliveries: string[] = [];
  /** Runs after each delivery (a line, or a block of `lines`). */
  onDelivery?: (lines: number) => void;

  override deliver(line: Uint8Array): void {
    this.deliveries.push(decoder.decode(line));
    super.deliver(line);
    this.onDelivery?.(1);
  }

  deliverBlock(block: Uint8Array): void {
    const text = decoder.decode(block);
    this.deliveries.push(text);
    const lines = text.slice(0, -1).split("\n");
    for (const line of lines) super.deliver(encoder.encode(line + "\n"));
    this.onDelivery?.(lines.length);
  }
}

const encoder = new TextEncoder();

Deno.test("Room.hearAll() sends every member what hear() line by line would, in the same order", () => {
  // Random reads of lines, commands among them, heard both ways in twin rooms.
  const next = prng(42);
  const random = (below: number) => Math.floor(next() * below);
  const kinds = [
    () => `hello ${random(1000)}`,
    () => `/me waves ${random(10)}`,
    () => `/nick n${random(6)}`,
    () => "/list",
    () => `/msg n${random(6)} psst`,
    () => "",
    () => "//not a command",
    () => "/nope",
  ];
  let blocks = 0;
  for (let round = 0; round < 200; round++) {
    const reads = Array.from(
      { length: 1 + random(4) },
      () => Array.from({ length: 1 + random(8) }, () => kinds[random(kinds.length)]()),
    );
    // A fourth member is dropped as a slow consumer (as Client.ended does)
    // by the delivery that brings it to n lines, or never.
    const dropAt = random(3) === 0 ? Infinity : 1 + random(20);
    const streams = ["hear", "hearAll"].map((way) => {
      const room = new Room({ noun: "client", clock: () => 0, log: () => {} });
      const links = [
        new BlockLink("127.0.0.1:1"),
        new FakeLink("127.0.0.1:2"),
        new BlockLink(),
        new BlockLink("127.0.0.1:4"),
      ];
      const members = links.map((link) => room.join(link)!);
      let seen = 0;
      const drop = links[3] as BlockLink;
      drop.onDelivery = (lines) => {
        seen += lines;
        if (seen >= dropAt) room.leave(members[3], "slow consumer");
      };
      room.hear(members[2], "/nick n1");
      for (const [i, read] of reads.entries()) {
        const sender = members[i % 2];
        if (way === "hear") { for (const line of read) room.hear(sender, line); }
        else room.hearAll(sender, read);
      }
      return links;
    });
    // A block is one delivery, so the slow member is dropped by the block
    // that holds its n-th line, and its leave may come a few lines later than
    // line by line; otherwise every member sees the same, the leave once.
    const dropped = (line: string) => line.endsWith("left (slow consumer)");
    for (const [i, link] of streams[0].slice(0, 3).entries()) {
      const batched = streams[1][i].lines;
      const at = `round ${round}, member ${i}: ${reads}`;
      assert.deepEqual(
        batched.filter((line) => !dropped(line)),
        link.lines.filter((l) => !dropped(l)),
        at,
      );
      assert.equal(batched.filter(dropped).length, link.lines.filter(dropped).length, at);
    }
    const batched = streams[1][2] as BlockLink;
    blocks += batched.deliveries.filter((text) => text.split("\n").length > 2).length;
  }
  assert.ok(blocks > 50, `only ${blocks} blocks of several lines: the test lost its edge`);
});

Deno.test("Room.hearAll() gives a block-taking member one delivery for a read, others one per line", () => {
  const { room, add } = testRoom();
  const alice = add("alice");
  const tcp = new BlockLink();
  const tcpMember = room.join(tcp)!;
  const udp = add("udp");
  tcp.deliveries = [];
  tcp.take();
  alice.link.take();
  room.hearAll(alice.member, ["one", "two", "/me three"]);
  assert.deepEqual(tcp.deliveries, ["<alice> one\n<alice> two\n* alice three\n"]);
  assert.deepEqual(udp.link.take(), ["<alice> one", "<alice> two", "* alice three"]);
  assert.deepEqual(alice.link.take(), [], "a sender is not sent its own lines");
  // An answer to the sender alone comes between, in order, for the others too.
  room.hearAll(alice.member, ["four", "/list", "five"]);
  assert.deepEqual(udp.link.take(), ["<alice> four", "<alice> five"]);
  assert.deepEqual(tcp.deliveries.slice(1), ["<alice> four\n", "<alice> five\n"]);
  assert.equal(alice.link.take().at(-1), say.count(3, "client"));
  assert.ok(tcpMember.admitted);
});

Deno.test("Room.hearAll() keeps the leave of a member dropped while a read's lines go out, in its place", () => {
  for (
    const [lines, watcher, expected] of [
      // The leave is announced while the sender's lines are held: it is sent, after them.
      [["hi", "/quit"], "bob", [
        "<alice> hi",
        "* slow left (slow consumer)",
        "* alice left (quit)",
      ]],
      // An answer to the sender alone waits for what the room announced before it.
      [["hi", "/nick al2"], "alice", ["* slow left (slow consumer)", "* alice is now al2"]],
    ] as const
  ) {
    for (const way of ["hear", "hearAll"] as const) {
      const room = new Room({ noun: "client", clock: () => 0, log: () => {} });
      const links = { alice: new BlockLink(), bob: new BlockLink(), slow: new BlockLink() };
      const alice = room.join(links.alice, "alice")!;
      room.join(links.bob, "bob");
      const slow = room.join(links.slow, "slow")!;
      for (const link of Object.values(links)) link.take();
      links.slow.onDelivery = () => room.leave(slow, "slow consumer");
      if (way === "hear") { for (const line of lines) room.hear(alice, line); }
      else room.hearAll(alice, lines);
      assert.deepEqual(links[watcher].take(), expected, `${way}: ${lines}`);
    }
  }
});
