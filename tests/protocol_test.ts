import assert from "node:assert/strict";
import {
  hasControlCharacters,
  MAX_INCOMING_LINE_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_NAME_BYTES,
  MAX_NAME_CHARS,
} from "../line_buffer.ts";
import {
  defaultName,
  listLine,
  MAX_SERVER_LINE_BYTES,
  messageText,
  nameError,
  nameKey,
  ownLine,
  ownNameFrom,
  parseCommand,
  parsePrivate,
  say,
  SERVER_NAME,
} from "../protocol.ts";

const encoder = new TextEncoder();
const INVALID_NAME = "ERR invalid name: use 1-32 letters, digits, _ or -";

Deno.test("nameError() accepts names of 1-32 letters, digits, _ and -", async (t) => {
  const names = [
    "alice",
    "张伟",
    "a_b-1",
    "a".repeat(32),
    "张".repeat(32),
    // 32 characters outside the BMP: 64 UTF-16 units but still 32 characters.
    "𠀀".repeat(32),
    "x",
    "_",
    "-",
    "Bob42",
    "José",
    "Алиса",
    "日本語",
    "한국어",
    "١٢٣", // Arabic-Indic digits are digits
    "สำราญ", // Thai with SARA AM as keyboards type it
    "ກຳພົນ", // Lao with AM
    "张伟_alice", // Han and Latin do not look alike: they may mix
    "Ωμέγα", // one look-alike script alone is fine
  ];
  for (const name of names) {
    await t.step(JSON.stringify(name), () => assert.equal(nameError(name), undefined));
  }
});

Deno.test("nameError() rejects names that are empty, too long or hold other characters", async (t) => {
  const names: [string, string][] = [
    ["empty", ""],
    ["33 characters", "a".repeat(33)],
    ["33 Chinese characters", "张".repeat(33)],
    ["33 characters outside the BMP", "𠀀".repeat(33)],
    ["a space inside", "a b"],
    ["a leading space", " alice"],
    ["a trailing space", "alice "],
    ["an ideographic space", "张\u3000伟"],
    ["a no-break space", "a\u00a0b"],
    ["a zero-width space", "a\u200bb"],
    ["only a zero-width space", "\u200b"],
    ["a zero-width joiner", "a\u200db"],
    ["server and a Hangul filler, an invisible letter", "server\u1160"],
    ["alice and a half-width Hangul filler", "alice\uffa0"],
    ["only Hangul fillers", "\u3164\u115f"],
    ["a soft hyphen", "a\u00adb"],
    ["a right-to-left override", "a\u202eb"],
    ["a BEL", "a\x07"],
    ["a tab", "a\tb"],
    ["a newline", "a\nb"],
    ["an ESC sequence", "\x1b[31mred"],
    ["a DEL", "a\x7f"],
    ["a C1 CSI", "a\u009bb"],
    ["a dot", "a.b"],
    ["an at sign", "a@b"],
    ["a slash", "a/b"],
    ["angle brackets", "<alice>"],
    ["a star", "*"],
    ["an emoji", "😀"],
    ["full-width punctuation", "张，伟"],
    ["a Roman numeral (a number, not a digit)", "Ⅻ"],
    ["a superscript digit", "a²"],
    ["a fraction", "½"],
  ];
  for (const [description, name] of names) {
    await t.step(description, () => assert.equal(nameError(name), INVALID_NAME));
  }
});

Deno.test("nameError() refuses what NFKC would change, as UTS #39's profile restricts it", async (t) => {
  const names = [
    "ＡＬＩＣＥ",
    "ａ",
    "ℌello",
    "𝗮lice",
    "ſam",
    "ﬁne",
    "ｂob",
    "ｓｅｒｖｅｒ",
    "ｕｓｅｒ１",
  ];
  for (const name of names) {
    await t.step(JSON.stringify(name), () => {
      assert.equal(nameError(name), "ERR invalid name: use 1-32 letters, digits, _ or -");
    });
  }
});

Deno.test("nameError() refuses names that mix look-alike scripts, as a Cyrillic а in alice", async (t) => {
  const names = [
    ["alice with a Cyrillic а", "\u0430lice"],
    ["server with a Greek ο", "serverο"],
    ["Latin and Cyrillic", "paypal\u0430"],
    ["Latin and Armenian", "\u0585k"],
  ];
  for (const [label, name] of names) {
    await t.step(label, () => {
      assert.equal(
        nameError(name),
        "ERR invalid name: do not mix Latin, Greek, Cyrillic, Armenian or Cherokee letters",
      );
    });
  }
});

Deno.test("nameError() reserves the server's name in every spelling that has its key", async (t) => {
  for (const name of ["server", "SERVER", "Server", "SeRvEr", "ѕегѵег"]) {
    await t.step(JSON.stringify(name), () => {
      assert.equal(nameError(name), `ERR name reserved: ${name}`);
    });
  }
  assert.equal(nameError(SERVER_NAME), "ERR name reserved: server");
  // Only the whole name is reserved.
  assert.equal(nameError("server2"), undefined);
  assert.equal(nameError("observer"), undefined);
});

Deno.test("defaultName() gives user<id>", () => {
  assert.equal(defaultName(1), "user1");
  assert.equal(defaultName(42), "user42");
});

Deno.test("nameError() reserves default names so /nick cannot take a newcomer's name", async (t) => {
  for (
    const name of [
      defaultName(1),
      defaultName(12345),
      "USER7",
      "User0",
    ]
  ) {
    await t.step(JSON.stringify(name), () => {
      assert.equal(nameError(name), `ERR name reserved: ${name}`);
    });
  }
  // Only user followed by digits and nothing else is a default name.
  for (const name of ["user", "users", "user_1", "user1a", "superuser1", "我是user1"]) {
    assert.equal(nameError(name), undefined, name);
  }
});

Deno.test("nameError() and the /nick help agree on the 32-character limit", () => {
  assert.equal(MAX_NAME_CHARS, 32);
  assert.match(INVALID_NAME, /1-32/);
  assert.match(say.help[0], /1-32 letters, digits, _ or -/);
  // The longest name, in 4-byte characters, is exactly MAX_NAME_BYTES.
  assert.equal(encoder.encode("𠀀".repeat(MAX_NAME_CHARS)).length, MAX_NAME_BYTES);
});

Deno.test("nameKey() makes case and full-width variants of a name one name", () => {
  for (const variant of ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", "ＡｌＩｃＥ"]) {
    assert.equal(nameKey(variant), nameKey("alice"), variant);
  }
  // Composed and decomposed é are one name too.
  assert.equal(nameKey("JOSE\u0301"), nameKey("Jos\u00e9"));
  // The ligature ﬁ is the letters f and i.
  assert.equal(nameKey("ﬁona"), nameKey("fiona"));
});

Deno.test("nameKey() keeps different names apart", () => {
  const names = ["alice", "alice2", "alicia", "张伟", "张三", "bob", "b_o-b", "bob_"];
  const keys = new Set(names.map(nameKey));
  assert.equal(keys.size, names.length);
  assert.equal(nameKey("张伟"), "张伟");
});

Deno.test("nameError() and nameKey() take canonically equivalent spellings as one name (NFC)", async (t) => {
  const spellings: [string, string[]][] = [
    ["José", ["Jos\u00e9", "Jose\u0301"]],
    ["Nguyễn", ["Nguy\u1ec5n", "Nguy\u00ea\u0303n", "Nguye\u0302\u0303n"]],
    ["Ǻsa", ["\u01fasa", "\u00c5\u0301sa", "A\u030a\u0301sa"]],
    ["Phở", ["Ph\u1edf", "Pho\u031b\u0309", "Ph\u01a1\u0309"]],
    ["Zoë", ["Zo\u00eb", "Zoe\u0308"]],
  ];
  for (const [label, forms] of spellings) {
    await t.step(label, () => {
      for (const form of forms) {
        assert.equal(nameError(form), undefined, JSON.stringify(form));
        assert.equal(nameKey(form), nameKey(forms[0]), JSON.stringify(form));
      }
    });
  }
  // The 32 characters are counted after NFC: 32 é typed decomposed fit.
  assert.equal(nameError("e\u0301".repeat(32)), undefined);
  assert.equal(nameError("e\u0301".repeat(33)), INVALID_NAME);
});

Deno.test("nameError() accepts names in scripts that write vowels and tones as combining marks", async (t) => {
  const names = [
    ["Hindi", "अमित"],
    ["Hindi", "देवनागरी"],
    ["Hindi, a nukta and an anusvara", "ज़ींद"],
    ["Vietnamese, typed decomposed", "Tr\u0061\u0302\u0300n"],
    ["Bengali", "সৌমিত্র"],
    ["Tamil", "தமிழ்"],
    ["Thai", "สมชาย"],
    ["Arabic with its vowel marks", "مُحَمَّد"],
    ["Hebrew with its points", "שָׁלוֹם"],
    ["Burmese", "ကျော်"],
    ["Burmese, three marks on one letter", "လှိုင်"],
    ["Tibetan, a three-letter stack", "སྒྲིབ"],
    ["Yoruba", "Adéṣọlá"],
    ["polytonic Greek", "ᾨδή"],
  ];
  for (const [label, name] of names) {
    await t.step(`${label}: ${name}`, () => assert.equal(nameError(name), undefined));
  }
});

Deno.test("nameError() refuses a stack of marks, a mark on nothing and a mark twice", async (t) => {
  const names = [
    ["four accents on a", "a\u0301\u0302\u0303\u0304"],
    ["three more on a precomposed á", "\u00e1\u0302\u0303\u0304"],
    ["Zalgo text", "z\u0300\u0301\u0302\u0303\u0304\u0305a\u0306\u0307\u0308\u0309\u030a"],
    ["four marks on a Devanagari letter", "क\u093c\u0941\u0902\u0901"],
    ["five on a Tibetan letter", "ས\u0f92\u0fb2\u0fb1\u0f72\u0f7e"],
    ["a mark first", "\u0301alice"],
    ["only a mark", "\u0301"],
    ["a mark on _", "_\u0301"],
    ["a mark on -", "a-\u0308"],
    ["the same accent twice", "e\u0301\u0301"],
    ["an accent on é that is already there", "\u00e9\u0301"],
    ["an enclosing circle", "a\u20dd"],
  ];
  for (const [label, name] of names) {
    await t.step(label, () => assert.equal(nameError(name), INVALID_NAME));
  }
});

Deno.test("nameError() refuses characters UTS #39 restricts in identifiers, as small capitals", async (t) => {
  const names = [
    ["small capitals", "ᴀʟɪᴄᴇ"],
    ["small capitals for bob", "ʙᴏʙ"],
    ["small capitals for server", "ꜱᴇʀᴠᴇʀ"],
    ["one small capital", "\u1d00lice"],
    ["Latin kra, a letter no alphabet uses now", "ĸarl"],
    ["dotless j, a letter for mathematics", "ȷohn"],
    ["IPA letters", "ɹɐʇ"],
    ["Runic, an excluded script", "ᚱᚢᚾ"],
    ["Gothic, an excluded script", "𐌲𐌿𐍄"],
    ["Coptic, an excluded script", "ⲁⲗⲓⲥⲉ"],
    ["Cherokee, a script of limited use", "ᏣᎳᎩ"],
    ["Linear B", "𐀀𐀁"],
  ];
  for (const [label, name] of names) {
    await t.step(`${label}: ${name}`, () => assert.equal(nameError(name), INVALID_NAME));
  }
});

Deno.test("nameError() reserves names that look like user<N> or server", async (t) => {
  const names = [
    "user١", // ARABIC-INDIC DIGIT ONE
    "user۱", // EXTENDED ARABIC-INDIC DIGIT ONE
    "user١١",
    "user০", // BENGALI DIGIT ZERO looks like 0
    "user٥", // ARABIC-INDIC DIGIT FIVE is a small circle, like 0
    "user๐", // THAI DIGIT ZERO
    "userl", // l for 1
    "userI1", // capital I for 1
    "userO", // O for 0
    "USERlO",
    "ѕегѵег", // all Cyrillic: dze, ie, ghe, izhitsa
  ];
  for (const name of names) {
    await t.step(JSON.stringify(name), () => {
      assert.equal(nameError(name), `ERR name reserved: ${name}`);
    });
  }
  // Look-alikes that mix Latin and Cyrillic are refused before they are compared.
  assert.match(nameError("us\u0435r1")!, /^ERR invalid name: do not mix/);
  // Digits that look like no ASCII digit are a name of their own.
  assert.equal(nameError("user٢"), undefined);
});

Deno.test("nameKey() gives a name's look-alikes its key, as UTS #39's confusable skeleton", async (t) => {
  const lookAlikes = [
    ["alice", "a1ice", "AIice", "aIice", "ALICE"],
    ["paypal", "paypaI", "PAYPAL"],
    ["mary", "rnary", "MARY"],
    ["bob", "b0b", "BOB", "ВОВ"], // the last all Cyrillic capitals
    ["cop", "сор"], // Cyrillic
    ["user1", "user١", "userl", "USERI"],
    ["server", "ѕегѵег", "SERVER"],
    ["oops", "0ops", "OOPS", "00ps"],
    ["straße", "STRASSE", "strasse"],
    ["José", "JOSE\u0301", "jos\u00e9"],
  ];
  for (const [name, ...others] of lookAlikes) {
    await t.step(name, () => {
      for (const other of others) assert.equal(nameKey(other), nameKey(name), other);
    });
  }
});

Deno.test("nameKey() keeps apart names that do not look alike", () => {
  const names = [
    "nick",
    "vick",
    "tim",
    "rim",
    "ana",
    "ama",
    "dob",
    "bob",
    "user",
    "users",
    "alicia",
  ];
  const keys = new Set(names.map(nameKey));
  assert.equal(keys.size, names.length);
  // A name in another script keeps its own letters.
  for (const name of ["张伟", "한국어", "अमित", "Алиса", "Ωμέγα"]) {
    assert.notEqual(nameKey(name), nameKey("alice"), name);
  }
});

Deno.test("parseCommand() reads /command and its argument", async (t) => {
  const cases: { line: string; command: { name: string; argument: string } }[] = [
    { line: "/nick bob", command: { name: "/nick", argument: "bob" } },
    // The command is case-insensitive; the argument keeps its case.
    { line: "/NICK Bob", command: { name: "/nick", argument: "Bob" } },
    // Spaces around the argument are not part of it.
    { line: "/nick   bob  ", command: { name: "/nick", argument: "bob" } },
    { line: "/nick 张伟", command: { name: "/nick", argument: "张伟" } },
    { line: "/list", command: { name: "/list", argument: "" } },
    { line: "/nick ", command: { name: "/nick", argument: "" } },
    { line: "/quit see you all", command: { name: "/quit", argument: "see you all" } },
    { line: "/", command: { name: "/", argument: "" } },
    { line: "/Help", command: { name: "/help", argument: "" } },
  ];
  for (const { line, command } of cases) {
    await t.step(JSON.stringify(line), () => assert.deepEqual(parseCommand(line), command));
  }
});

Deno.test("parseCommand() leaves lines that do not start with / as messages", () => {
  for (const line of ["hello", "", " /nick bob", "a/b", "你好 /list", "\\/nick bob"]) {
    assert.equal(parseCommand(line), undefined, JSON.stringify(line));
  }
});

Deno.test("listLine() shows id, name, address and whole seconds of age and idle time", () => {
  const entry = {
    id: 7,
    name: "张伟",
    address: "127.0.0.1:50123",
    connectedAt: 1_000,
    lastHeardAt: 5_500,
  };
  assert.equal(
    listLine(entry, 12_999),
    "* id=7 name=张伟 addr=127.0.0.1:50123 age=11 idle=7",
  );
  assert.equal(
    listLine({ ...entry, address: "[::1]:9090" }, 5_500),
    "* id=7 name=张伟 addr=[::1]:9090 age=4 idle=0",
  );
});

Deno.test("say gives the exact text of relayed lines and notices", () => {
  assert.equal(say.relay("alice", "你好，世界"), "<alice> 你好，世界");
  assert.equal(say.relay("bob", ""), "<bob> ");
  assert.equal(say.welcome("guest1"), "* welcome, you are guest1 (type /help for commands)");
  assert.equal(say.joined("张伟"), "* 张伟 joined");
  assert.equal(say.left("bob", "quit"), "* bob left (quit)");
  assert.equal(say.renamed("guest1", "alice"), "* guest1 is now alice");
  assert.equal(say.bye, "* bye");
  assert.equal(say.idle, "* idle timeout, bye");
  assert.equal(say.kicked, "* kicked by server");
  assert.equal(say.shuttingDown, "* server shutting down");
});

Deno.test("say.count() uses the plural for every number but 1", () => {
  assert.equal(say.count(0, "client"), "* 0 clients");
  assert.equal(say.count(1, "client"), "* 1 client");
  assert.equal(say.count(2, "client"), "* 2 clients");
  assert.equal(say.count(11, "peer"), "* 11 peers");
});

Deno.test("say gives the exact text of every error, each starting with ERR", () => {
  assert.equal(say.nickUsage, "ERR usage: /nick NAME");
  assert.equal(say.nameTaken("alice"), "ERR name taken: alice");
  assert.equal(say.unknownCommand("/foo"), "ERR unknown command /foo (try /help)");
  assert.equal(say.invalidUtf8, "ERR invalid UTF-8");
  assert.equal(say.serverFull(10, "client"), "ERR server full (max 10 clients)");
});

Deno.test("say.tooLong names the 255-byte limit", () => {
  assert.equal(say.tooLong, "ERR line too long (max 255 bytes)");
  assert.ok(say.tooLong.includes(String(MAX_MESSAGE_BYTES)));
});

Deno.test("say.help lists each command once, as notices", () => {
  assert.equal(say.help.length, 7);
  for (
    const [i, command] of ["/nick", "/list", "/msg", "/me", "/quit", "/help", "//text"].entries()
  ) {
    assert.ok(say.help[i].startsWith(`* ${command} `), say.help[i]);
  }
});

Deno.test("say's lines with the longest names and messages fit MAX_SERVER_LINE_BYTES", () => {
  const name = "𠀀".repeat(MAX_NAME_CHARS);
  const message = "中".repeat(MAX_MESSAGE_BYTES / 3);
  assert.equal(encoder.encode(message).length, MAX_MESSAGE_BYTES);
  const lines = [
    say.relay(name, message),
    say.welcome(name),
    say.joined(name),
    say.left(name, "idle timeout"),
    say.renamed(name, name),
    say.nameTaken(name),
    say.unknownCommand(message),
    listLine({
      id: Number.MAX_SAFE_INTEGER,
      name,
      address: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
      connectedAt: 0,
      lastHeardAt: 0,
    }, 10 * 365 * 86_400_000), // ten years connected
  ];
  for (const line of lines) {
    const size = encoder.encode(line + "\n").length;
    assert.ok(size <= MAX_SERVER_LINE_BYTES, `${size} bytes: ${line.slice(0, 40)}...`);
    assert.ok(size <= MAX_INCOMING_LINE_BYTES);
  }
});

Deno.test("say's fixed lines are single lines without control characters", () => {
  const fixed = [
    ...say.help,
    say.bye,
    say.idle,
    say.kicked,
    say.shuttingDown,
    say.nickUsage,
    say.tooLong,
    say.invalidUtf8,
    say.welcome("alice"),
    say.serverFull(1, "client"),
  ];
  for (const line of fixed) {
    assert.equal(hasControlCharacters(line), false, JSON.stringify(line));
    assert.match(line, /^(\* |ERR )/, "a notice starts with *, an error with ERR");
  }
});

Deno.test("parseCommand() reads a line beginning with // as text, and messageText() drops one /", async (t) => {
  const cases: [string, string][] = [
    ["//quit", "/quit"],
    ["//nick hijacked", "/nick hijacked"],
    ["//", "/"],
    ["///", "//"],
    ["/".repeat(255), "/".repeat(254)],
    ["//你好 /list", "/你好 /list"],
  ];
  for (const [line, text] of cases) {
    await t.step(JSON.stringify(line), () => {
      assert.equal(parseCommand(line), undefined);
      assert.equal(messageText(line), text);
    });
  }
  // Other text is left as it is: only a leading "//" is the escape.
  for (const line of ["hello", "", "a//b", " //x", "/"]) {
    assert.equal(messageText(line), line, JSON.stringify(line));
  }
  // A single "/" still begins a command.
  assert.deepEqual(parseCommand("/quit"), { name: "/quit", argument: "" });
});

Deno.test("nameKey() makes Thai SARA AM and its NFKC spelling one name", () => {
  assert.equal(
    nameKey("\u0e2a\u0e33\u0e23\u0e32\u0e0d"),
    nameKey("\u0e2a\u0e4d\u0e32\u0e23\u0e32\u0e0d"),
  );
});

Deno.test("ownLine shows a sent line as the room shows it; other commands and empty lines not", () => {
  assert.equal(ownLine("alice", "hello"), "<alice> hello");
  assert.equal(ownLine("alice", "//quit is text"), "<alice> /quit is text");
  assert.equal(ownLine("alice", "a\x1b[31mred\x07"), "<alice> ared");
  assert.equal(ownLine("alice", "/me waves"), "* alice waves");
  assert.equal(ownLine("alice", "/ME  waves "), "* alice waves");
  assert.equal(ownLine("alice", "/msg bob  psst  "), "<alice> (private to bob) psst");
  for (const line of ["/me", "/msg bob", "/msg", "/list", "/nick x", "/quit", "", "\x07"]) {
    assert.equal(ownLine("alice", line), undefined, JSON.stringify(line));
  }
});

Deno.test("parsePrivate reads /msg's name and text as the room does", () => {
  assert.deepEqual(parsePrivate("bob hi there"), { to: "bob", text: "hi there" });
  assert.deepEqual(parsePrivate("bob\thi"), { to: "bob", text: "hi" });
  assert.equal(parsePrivate("bob"), undefined);
  assert.equal(parsePrivate("bob   "), undefined);
  assert.equal(parsePrivate(""), undefined);
});

Deno.test("ownNameFrom follows the welcome and our own renames, not others' lines", () => {
  assert.equal(ownNameFrom(say.welcome("user7"), undefined), "user7");
  assert.equal(ownNameFrom(say.renamed("user7", "小明"), "user7"), "小明");
  assert.equal(ownNameFrom(say.renamed("bob", "carol"), "小明"), "小明");
  assert.equal(ownNameFrom(say.relay("bob", "* welcome, you are x"), "小明"), "小明");
  assert.equal(ownNameFrom(say.relay("user7", "is now admin"), "user7"), "user7");
  assert.equal(ownNameFrom("* user7 is now ", "user7"), "user7");
});

Deno.test("nameError reserves the first word of every notice that does not begin with a name", () => {
  // A member named "kicked" could forge "* kicked by server" with "/me by server".
  for (const line of [say.kicked, say.idle, say.bye, say.alreadyNamed("x"), say.roomDown]) {
    const word = line.split(" ")[1];
    assert.equal(nameError(word), `ERR name reserved: ${word}`, line);
    assert.equal(nameError(word.toUpperCase()), `ERR name reserved: ${word.toUpperCase()}`, line);
  }
  // Notices that begin with the member's own name stay that member's.
  assert.equal(nameError("joined"), undefined);
  assert.equal(nameError("alice"), undefined);
});
