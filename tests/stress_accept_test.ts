/**
 * A connection reset before accept() (Deno reports NotConnected) must not make
 * the accept loop back off: one client could otherwise stall every newcomer.
 */
import assert from "node:assert/strict";
import { join, ServerProcess, TESTS } from "./stress_scenarios.ts";
import { NEEDS_SPAWN } from "./util.ts";

Deno.test({
  name: "connections reset before accept do not hold up the next client",
  ignore: NEEDS_SPAWN,
  async fn() {
    await using server = await ServerProcess.start();
    const peer = await new Deno.Command("python3", {
      args: [`${TESTS}churn_peer.py`, String(server.port), "50", "1", "abort_at_once"],
      stdout: "null",
    }).output();
    assert.equal(peer.code, 0);
    const started = performance.now();
    const client = await join(server.port);
    client.close();
    const ms = performance.now() - started;
    // With a 100 ms back-off per reset this took 5 s; the welcome should take milliseconds.
    assert.ok(ms < 500, `the welcome took ${Math.round(ms)} ms after 50 resets`);
  },
});
