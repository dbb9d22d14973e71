/**
 * A scripted FTP control server on loopback for cases a real server cannot be made to do on cue
 * (a pooled connection dropped mid-command). It answers the login sequence itself and hands every
 * other command to `script`, which returns a reply line or 'drop' to cut the connection.
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface FakeFtp {
  port: number;
  /** Logins completed. */
  logins: number;
  /** Every command after login, as `<connection>:<line>`. */
  commands: string[];
  close(): Promise<void>;
}

export type Script = (connection: number, line: string) => string | 'drop';

export interface FakeOptions {
  /** Answer PASV (never EPSV, which gets 502) announcing this address, and serve RETR of `files`. */
  passive?: { announce: string; files: Record<string, string> };
}

export async function startFakeFtp(script: Script, options: FakeOptions = {}): Promise<FakeFtp> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const state: FakeFtp = {
    port: 0,
    logins: 0,
    commands: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((socket) => {
    const id = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('220 fake ready\r\n');
    let buffer = '';
    let data: Promise<Socket> | null = null;
    const passive = options.passive;
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      for (let nl = buffer.indexOf('\r\n'); nl >= 0; nl = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        const verb = line.split(' ', 1)[0]!.toUpperCase();
        if (verb === 'USER') socket.write('331 password please\r\n');
        else if (verb === 'PASS') {
          state.logins += 1;
          socket.write('230 logged in\r\n');
        } else if (verb === 'TYPE') socket.write('200 binary\r\n');
        else if (verb === 'FEAT')
          socket.write('211-Features:\r\n MLST type*;size*;modify*;\r\n EPSV\r\n211 End\r\n');
        else if (verb === 'QUIT') {
          socket.end('221 bye\r\n');
        } else if (passive && verb === 'EPSV') {
          state.commands.push(`${id}:${line}`);
          socket.write('502 EPSV not here\r\n');
        } else if (passive && verb === 'PASV') {
          state.commands.push(`${id}:${line}`);
          const listener = createServer();
          data = new Promise<Socket>((resolve) => {
            listener.once('connection', (conn) => {
              listener.close();
              conn.on('error', () => {});
              resolve(conn);
            });
          });
          listener.listen(0, '127.0.0.1', () => {
            const address = listener.address();
            const port = typeof address === 'object' && address ? address.port : 0;
            const host = passive.announce.replaceAll('.', ',');
            socket.write(`227 Entering Passive Mode (${host},${port >> 8},${port & 255})\r\n`);
          });
        } else if (passive && verb === 'RETR') {
          state.commands.push(`${id}:${line}`);
          const body = passive.files[line.slice(5)];
          const pending = data;
          data = null;
          if (body === undefined || !pending) {
            socket.write('550 No such file\r\n');
            continue;
          }
          socket.write('150 Opening data connection\r\n');
          void pending.then((conn) => conn.end(body, () => socket.write('226 Transfer complete\r\n')));
        } else {
          state.commands.push(`${id}:${line}`);
          const reply = script(id, line);
          if (reply === 'drop') {
            socket.destroy();
            return;
          }
          socket.write(`${reply}\r\n`);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  state.port = typeof address === 'object' && address ? address.port : 0;
  return state;
}
