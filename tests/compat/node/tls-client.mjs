// pusher-js over wss:// in a process of its own: in Node, pusher-js opens its socket with
// faye-websocket and no TLS options, so the test CA can only be trusted through
// NODE_EXTRA_CA_CERTS, which node reads at start. Usage: node tls-client.mjs PORT CHANNEL
// Prints one JSON line per happening: {state, serial}, {subscribed}, {event, data}.
import PusherJS from 'pusher-js';

const [port, channelName] = process.argv.slice(2);
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const client = new PusherJS('app-key', {
  cluster: 'mt1',
  wsHost: '127.0.0.1',
  wssPort: Number(port),
  forceTLS: true,
  enabledTransports: ['ws'],
  disableStats: true,
});
client.connection.bind('state_change', ({ current }) => {
  // The TLS socket under faye-websocket, to report the certificate this connection got.
  const stream = client.connection.connection?.transport?.socket?._stream;
  const serial = stream?.getPeerCertificate?.()?.serialNumber;
  print({ state: current, serial, socketId: client.connection.socket_id });
});
client.connection.bind('error', (error) => print({ error: JSON.stringify(error) }));
const channel = client.subscribe(channelName);
channel.bind('pusher:subscription_succeeded', () => print({ subscribed: channelName }));
channel.bind_global((event, data) => {
  if (!event.startsWith('pusher')) print({ event, data });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
