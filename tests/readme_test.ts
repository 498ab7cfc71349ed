/**
 * The README quotes code and commands; these tests fail when the code moves
 * on and the README does not. Reading files needs --allow-read (the README's
 * test command grants it).
 */
import assert from "node:assert/strict";
import { NEEDS_SPAWN } from "./util.ts";

function readProjectFile(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`../${name}`, import.meta.url));
}

Deno.test({
  name: "every line of code the README's life-cycle table quotes is still in that script",
  ignore: NEEDS_SPAWN,
  async fn() {
    const readme = await readProjectFile("README.md");
    const quotes = [...readme.matchAll(/`([a-z_]+\.ts)`: `([^`]+)`/g)];
    assert.ok(quotes.length >= 7, `found ${quotes.length} quotes`);
    for (const [, file, code] of quotes) {
      assert.ok(
        (await readProjectFile(file)).includes(code),
        `${file} no longer contains: ${code}`,
      );
    }
  },
});

Deno.test({
  name: "the README's test command is the test task in deno.json",
  ignore: NEEDS_SPAWN,
  async fn() {
    const readme = await readProjectFile("README.md");
    const config = JSON.parse(await readProjectFile("deno.json"));
    assert.ok(readme.includes("deno task test"));
    assert.ok(readme.includes(config.tasks.test), `README does not show: ${config.tasks.test}`);
  },
});
