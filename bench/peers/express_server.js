// express-idempotency with its Redis adapter, serving the peer comparison's endpoint:
// POST /work (Idempotency-Key header) runs a handler doing 1 ms of fixed work and counting
// its runs; GET /runs reads the count. Installed by run.sh into an ignored directory.
// Usage: NODE_PATH=... node express_server.js   (REDIS_URL, default redis://127.0.0.1:6379)
"use strict";
const express = require("express");
const { idempotency, getSharedIdempotencyService } = require("express-idempotency");
const RedisAdapter = require("express-idempotency-redis-adapter").default;

const adapter = new RedisAdapter({
  connectionConfig: { url: process.env.REDIS_URL || "redis://127.0.0.1:6379" },
  ttl: 3600,
});
let runs = 0;

const app = express();
app.use(express.json());
app.get("/runs", (_req, res) => res.type("text").send(String(runs)));
app.get("/session", (_req, res) => res.send("no session needed"));
app.post("/work", idempotency({ dataAdapter: adapter }), async (req, res) => {
  // The middleware calls the handler on a hit too; the README's check skips the work.
  if (getSharedIdempotencyService().isHit(req)) return;
  await new Promise((resolve) => setTimeout(resolve, 1));
  runs += 1;
  res.json({ key: req.body.key, run: runs });
});

adapter
  .connect()
  .then(() => {
    const server = app.listen(0, "127.0.0.1", () => {
      console.log(`listening on 127.0.0.1:${server.address().port}`);
    });
    server.keepAliveTimeout = 60000;
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
