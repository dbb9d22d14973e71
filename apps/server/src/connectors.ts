/** The connectors this server serves: one explicit list (a third-party connector is one more import). */
import { azure } from '@cloudmux/connector-azure';
import { ftp } from '@cloudmux/connector-ftp';
import { local } from '@cloudmux/connector-local';
import { s3 } from '@cloudmux/connector-s3';
import { smb } from '@cloudmux/connector-smb';
import { webdav } from '@cloudmux/connector-webdav';
import type { AnyConnectorDefinition } from '@cloudmux/core';

export const defaultConnectors: readonly AnyConnectorDefinition[] = [local, webdav, ftp, smb, s3, azure];

export class ConnectorRegistry {
  readonly #byService = new Map<string, AnyConnectorDefinition>();

  constructor(definitions: readonly AnyConnectorDefinition[]) {
    for (const definition of definitions) {
      if (definition.kind !== 'cloudmux.connector')
        throw new Error(`not a connector definition: ${String(definition)}`);
      if (this.#byService.has(definition.service))
        throw new Error(`connector ${definition.service} is listed twice`);
      this.#byService.set(definition.service, definition);
    }
  }

  get(service: string): AnyConnectorDefinition | undefined {
    return this.#byService.get(service);
  }

  all(): AnyConnectorDefinition[] {
    return [...this.#byService.values()];
  }
}
