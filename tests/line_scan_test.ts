import assert from "node:assert/strict";
import { generateLineScan } from "../tools/gen_line_scan.ts";

Deno.test("line_scan_wasm.ts is what tools/gen_line_scan.ts assembles from line_scan.wat", async () => {
  const committed = await Deno.readTextFile(new URL("../line_scan_wasm.ts", import.meta.url));
  const generated = await generateLineScan();
  assert.ok(committed === generated, "line_scan_wasm.ts is out of date: run deno task line-scan");
});
