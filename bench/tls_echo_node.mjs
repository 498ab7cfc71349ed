// tls_echo_node.mjs - the TLS form of echo_node.mjs: what a Node user would
// write, tls.createServer + socket.pipe(socket).
// usage: node tls_echo_node.mjs PORT CERT.pem KEY.pem
import { readFileSync } from "node:fs";
import tls from "node:tls";
const [port, certPath, keyPath] = process.argv.slice(2);
const server = tls.createServer(
  { cert: readFileSync(certPath), key: readFileSync(keyPath) },
  (sock) => {
    sock.setNoDelay(true);
    sock.on("error", () => {}); // peers vanish mid-benchmark; don't crash
    sock.pipe(sock);
  },
);
server.on("tlsClientError", () => {});
server.listen({ port: Number(port), host: "127.0.0.1", backlog: 4096 }, () => {
  console.log("listening", port);
});
