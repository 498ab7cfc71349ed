/**
 * One table of chat cases run against both servers, over real sockets on
 * 127.0.0.1: wherever the transport does not force a difference, TCP and UDP
 * members see the same lines.
 */
import assert from "node:assert/strict";
import { startServer } from "../server.ts";
import { startUdpServer } from "../udp_server.ts";
import { ANNOUNCE_LIMIT } from "../room.ts";
import { say } from "../protocol.ts";
import { TestClient } from "./util.ts";
import { TestPeer } from "./udp_util.ts";

/** A member's end, whatever the transport. */
interface ChatEnd extends Disposable {
  send(line: string): Promise<void>;
  next(): Promise<string>;
}

/** A running server of one transport, and a way to connect to it. */
interface Running {
  console(line: string): void;
  /** Connects and returns once the welcome has been read. */
  connect(): Promise<ChatEnd>;
  shutdown(): Promise<void>;
}

const transports: { name: string; start(): Running }[] = [
  {
    name: "TCP",
    start() {
      const server = startServer({ host: "127.0.0.1", port: 0, log: () => {} });
      return {
        console: (line) => server.console(line),
        shutdown: () => server.shutdown(),
        async connect() {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
          const client = new TestClient(conn);
          const end: ChatEnd = {
            send: (line) => client.send(line + "\n"),
            next: async () => (await client.line()) ?? "(end of stream)",
            [Symbol.dispose]: () => client[Symbol.dispose](),
          };
          assert.match(await end.next(), /^\* welcome, you are user\d+ /);
          return end;
        },
      };
    },
  },
  {
    name: "UDP",
    start() {
      const server = startUdpServer({ host: "127.0.0.1", port: 0, log: () => {} });
      return {
        console: (line) => server.console(line),
        shutdown: () => server.shutdown(),
        async connect() {
          const peer = new TestPeer();
          const end: ChatEnd = {
            send: (line) => peer.send(server.addr, line + "\n"),
            next: () => peer.next(),
            [Symbol.dispose]: () => peer[Symbol.dispose](),
          };
          await peer.send(server.addr, ""); // an empty datagram joins
          assert.match(await end.next(), /^\* welcome, you are user\d+ /);
          return end;
        },
      };
    },
  },
];

interface Case {
  name: string;
  /** Lines alice sends (she is id 1, bob id 2). */
  alice?: string[];
  /** A line typed at the server's console. */
  console?: string;
  aliceGets?: (string | RegExp)[];
  bobGets?: string[];
  /** Alice is out of the room after the case. */
  aliceLeaves?: boolean;
  /** Alice's name after the case (default alice). */
  aliceIsNow?: string;
}

const cases: Case[] = [
  {
    name: "a line goes to the others as <name> text, never back",
    alice: ["hello 你好 🇧🇪"],
    bobGets: ["<alice> hello 你好 🇧🇪"],
  },
  {
    name: "a line that is empty, or empty once sanitised, goes to nobody",
    alice: ["", "\x07\x1b"],
  },
  {
    name: "escape sequences are stripped whole, U+2028 too",
    alice: ["a\x1b[31mb\u2028* c"],
    bobGets: ["<alice> ab* c"],
  },
  {
    name: "/nick tells the renamer and the others",
    alice: ["/nick alicia"],
    aliceGets: ["* alice is now alicia"],
    bobGets: ["* alice is now alicia"],
    aliceIsNow: "alicia",
  },
  {
    name: "a line with a control character before its / is text, not a command",
    alice: ["\x01/nick evil", "\x1b[0m/quit"],
    bobGets: ["<alice> /nick evil", "<alice> /quit"],
  },
  {
    name: "/msg reaches one member, marked private",
    alice: ["/msg bob psst"],
    bobGets: ["<alice> (private) psst"],
  },
  {
    name: "/msg to nobody is an error",
    alice: ["/msg carol hi"],
    aliceGets: [say.noSuchName("carol")],
  },
  { name: "/me is an action", alice: ["/me waves"], bobGets: ["* alice waves"] },
  {
    name: "a rename to one's own name is answered, not announced",
    alice: ["/nick alice"],
    aliceGets: [say.alreadyNamed("alice")],
  },
  { name: "a taken name is refused", alice: ["/nick BOB"], aliceGets: [say.nameTaken("BOB")] },
  {
    name: "a reserved name is refused",
    alice: ["/nick user9"],
    aliceGets: ["ERR name reserved: user9"],
  },
  { name: "/help", alice: ["/help"], aliceGets: say.help },
  { name: "an unknown command", alice: ["/fly"], aliceGets: [say.unknownCommand("/fly")] },
  {
    name: "/list",
    alice: ["/list"],
    aliceGets: [/^\* id=1 name=alice addr=127\.0\.0\.1:\d+ /, /^\* id=2 name=bob /, /^\* 2 \w+s$/],
  },
  {
    name: "/quit",
    alice: ["/QUIT"],
    aliceGets: [say.bye],
    bobGets: [say.left("alice", "quit")],
    aliceLeaves: true,
  },
  {
    name: "a console line",
    console: "hello from the console",
    aliceGets: ["<server> hello from the console"],
    bobGets: ["<server> hello from the console"],
  },
  {
    name: "a console /kick",
    console: "/kick 1",
    aliceGets: [say.kicked],
    bobGets: [say.left("alice", "kicked")],
    aliceLeaves: true,
  },
];

for (const transport of transports) {
  for (const c of cases) {
    Deno.test(`${transport.name} chat: ${c.name}`, async () => {
      const server = transport.start();
      try {
        using alice = await server.connect();
        await alice.send("/nick alice");
        assert.equal(await alice.next(), "* user1 is now alice");
        using bob = await server.connect();
        await bob.send("/nick bob");
        assert.equal(await bob.next(), "* user2 is now bob");
        assert.equal(await alice.next(), "* user2 joined");
        assert.equal(await alice.next(), "* user2 is now bob");

        for (const line of c.alice ?? []) await alice.send(line);
        if (c.console !== undefined) server.console(c.console);
        // Then a marker on the same path, so "nothing else came" can be checked.
        if (!c.aliceLeaves) {
          await alice.send("/end");
          await alice.send("end");
        }
        const aliceExpects = [...c.aliceGets ?? []];
        if (!c.aliceLeaves) aliceExpects.push(say.unknownCommand("/end"));
        for (const expected of aliceExpects) {
          const line = await alice.next();
          if (typeof expected === "string") assert.equal(line, expected);
          else assert.match(line, expected);
        }
        const bobExpects = [...c.bobGets ?? []];
        if (!c.aliceLeaves) bobExpects.push(`<${c.aliceIsNow ?? "alice"}> end`);
        for (const expected of bobExpects) assert.equal(await bob.next(), expected);
      } finally {
        await server.shutdown();
      }
    });
  }
}

Deno.test("a crowd of 300 costs the same join notices over TCP and UDP: the announce limit's", async () => {
  const counts: Record<string, number> = {};
  for (const transport of transports) {
    const server = transport.start();
    const members: ChatEnd[] = [];
    try {
      for (let i = 0; i < 300; i++) members.push(await server.connect());
      await members.at(-1)!.send("done");
      let joins = 0;
      for (const member of members.slice(0, -1)) {
        for (
          let line = await member.next();
          line !== "<user300> done";
          line = await member.next()
        ) {
          if (line.endsWith(" joined")) joins++;
          else assert.fail(`${transport.name}: unexpected ${line}`);
        }
      }
      counts[transport.name] = joins;
    } finally {
      members.forEach((member) => member[Symbol.dispose]());
      await server.shutdown();
    }
  }
  // Member k hears of members k+1..100 only: 99 + 98 + ... + 1.
  const expected = (ANNOUNCE_LIMIT * (ANNOUNCE_LIMIT - 1)) / 2;
  assert.deepEqual(counts, { TCP: expected, UDP: expected });
});
