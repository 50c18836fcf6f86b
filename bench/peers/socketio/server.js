// socket.io 4 peer for bm-bench: the same semantics as bm-relay.
// - Clients connect over WebSocket only and authenticate with a bm-relay
//   connection token (HS256 with the relay key), checked by middleware.
// - Each socket joins the room of its user ("u<id>"): per-user routing.
// - POST /emit {"rooms":["u1",...],"data":<envelope>} emits "ev" to those
//   rooms; no history, no persistence, no adapter but the in-memory one.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');

const port = Number(process.env.BENCH_PORT);
const site = process.env.BENCH_SITE;
const key = Buffer.from(process.env.BENCH_RELAY_KEY, 'base64url');

function verify(token) {
  if (typeof token !== 'string' || token.length > 4096) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac('sha256', key).update(parts[0] + '.' + parts[1]).digest();
  const sig = Buffer.from(parts[2], 'base64url');
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch (e) {
    return null;
  }
  if (header.alg !== 'HS256' || claims.site !== site || claims.thread !== undefined) return null;
  if (!(claims.exp > Date.now() / 1000)) return null;
  return claims.sub;
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/emit') {
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks));
    } catch (e) {
      const msg = '{"error":"bad json"}';
      res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': msg.length });
      res.end(msg);
      return;
    }
    io.to(body.rooms).emit('ev', body.data);
    const msg = '{"ok":true}';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': msg.length });
    res.end(msg);
  });
});
server.keepAliveTimeout = 120000;

const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: 25000,
  pingTimeout: 20000,
});

io.use((socket, next) => {
  const sub = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (sub === null) return next(new Error('unauthorized'));
  socket.data.user = sub;
  next();
});

io.on('connection', (socket) => {
  socket.join('u' + socket.data.user);
});

server.listen(port, '127.0.0.1', 4096);
process.on('SIGTERM', () => process.exit(0));
