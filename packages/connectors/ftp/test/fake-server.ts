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

export async function startFakeFtp(script: Script): Promise<FakeFtp> {
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
