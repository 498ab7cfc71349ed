#!/usr/bin/env -S deno run --allow-net --allow-run --allow-read --allow-env
/**
 * The soak: the stress suite's TCP scenarios at ten times the CI scale, one
 * after the other, printing each one's counts and the server's peak RSS.
 * Not run in CI; it takes minutes. Needs a descriptor limit above 6,000
 * (3,000 clients here and 3,000 in the server process).
 *
 *   deno task soak              every scenario once
 *   deno task soak fanout churn only those
 *
 * @module
 */
import {
  churn,
  fanout,
  hostile,
  MB,
  ServerProcess,
  shutdownUnderLoad,
  slowConsumer,
} from "./stress_scenarios.ts";

const SCENARIOS: Record<string, (server: ServerProcess) => Promise<object>> = {
  // Ten times the clients (3,000 × 10 messages), and 1,000 clients × 30 messages: each
  // receiver gets 29,970 lines, under its 1 MiB queue bound even if it reads late.
  fanout: (server) => fanout(server, 3000, 10, 600_000),
  fanout_1000: (server) => fanout(server, 1000, 30, 600_000),
  slow: (server) => slowConsumer(server, 100, 2000, MB, 600_000),
  // Ten times the connections, each sending a tenth of the CI scenario's bytes (the 1 MB
  // line without a newline stays whole). Every line that passes is relayed to 501 others,
  // so this is ten times CI's deliveries; at full bytes it would be a hundred times, more
  // than this one process can read before the server drops its readers as too slow.
  hostile: (server) => hostile(server, 500, 0.1, 600_000),
  churn: (server) => churn(server, 50_000, 600_000),
  shutdown: (server) => shutdownUnderLoad(server, 1000, 10_000, 600_000),
};

// This one process reads for every client, 500 or 1,000 of them, and falls
// behind the room; at the default 1 MiB bound the server would rightly drop
// some as slow consumers (the slow scenario's subject) and spoil the scenario.
const EXTRA_FLAGS: Record<string, string[]> = {
  hostile: ["--max-queue", String(8 * MB)],
  shutdown: ["--max-queue", String(64 * MB)],
};

const chosen = Deno.args.length > 0 ? Deno.args : Object.keys(SCENARIOS);
let failed = false;
for (const name of chosen) {
  const scenario = SCENARIOS[name];
  if (scenario === undefined) {
    console.error(`soak.ts: unknown scenario "${name}": use ${Object.keys(SCENARIOS).join(", ")}`);
    Deno.exit(2);
  }
  // More clients than the default --max-clients of 1,000.
  const flags = ["--max-clients", "5000", ...(EXTRA_FLAGS[name] ?? [])];
  await using server = await ServerProcess.start(flags);
  const started = performance.now();
  try {
    const result = await scenario(server);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`${name} (${seconds} s): ${JSON.stringify(result)}`);
  } catch (error) {
    failed = true;
    console.log(`${name}: FAILED: ${error instanceof Error ? error.message : error}`);
    // Clients the server dropped (slow consumers) explain most failures at this scale.
    const drops = server.logs.filter((line) => line.startsWith("dropping "));
    if (drops.length > 0) console.log(`  the server dropped ${drops.length}: ${drops[0]} ...`);
    const lost = server.logs.filter((line) => / log lines dropped: /.test(line));
    if (lost.length > 0) console.log(`  the server's console log overflowed ${lost.length} times`);
    // The drain of the server's output may lag behind: wait for the bystander's close.
    const closed = await server.waitLog((line) => /^(closed|dropping) .* id=2[ :]/.test(line), 5000)
      .catch(() => "(no close of id=2 logged within 5 s)");
    console.log(`  ${closed}`);
  }
}
Deno.exit(failed ? 1 : 0);
