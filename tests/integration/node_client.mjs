// podium.js in Node (signaling only), for tests: prints each lifecycle event as a JSON line.
// node --experimental-websocket node_client.mjs <podium.js as a file: URL of an .mjs copy> <url> <token>
const [, , sdk, url, token] = process.argv;
const { PodiumClient } = await import(sdk);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const client = await PodiumClient.connect(url, token, { media: false });
for (const name of ["reconnecting", "reconnected", "disconnected", "close"]) {
  client.on(name, (data) => say({ event: name, data }));
}
say({ event: "joined" });
say({ event: "finished", reason: await client.closed });
process.exit(0);
