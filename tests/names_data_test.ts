import assert from "node:assert/strict";
import { generateNamesData } from "../tools/gen_names_data.ts";

Deno.test("names_data.ts is what tools/gen_names_data.ts makes of its pinned packages", async () => {
  const committed = await Deno.readTextFile(new URL("../names_data.ts", import.meta.url));
  const generated = await generateNamesData();
  // Not assert.equal: a diff of 17 KB of hex would bury the remedy.
  assert.ok(committed === generated, "names_data.ts is out of date: run deno task names-data");
});
