// A real S3-protocol server (s3rver) on loopback, in its own process so that
// tests may block on the CLI while it serves. Prints the port on stdout.
// usage: node s3-server.mjs DATA_DIR
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const S3rver = require("s3rver");
const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: process.argv[2] });
const addr = await server.run();
process.stdout.write(`${addr.port}\n`);
process.on("SIGTERM", () => server.close().finally(() => process.exit(0)));
