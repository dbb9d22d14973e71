/** Multipart upload sessions: the manager each server builds, reachable from its deps (tests, CLI). */
import type { ServerDeps } from '../http/deps.js';
import { type ManagerOptions, MultipartManager } from './manager.js';

export {
  MultipartManager,
  SESSION_TTL_MS,
  type SessionContext,
  type SessionView,
  SWEEP_INTERVAL_MS,
} from './manager.js';
export {
  DEFAULT_PART_SIZE,
  expectedPartSize,
  formatPartList,
  MAX_PARTS,
  type PartPlan,
  planParts,
} from './plan.js';
export { ensureFreeSpace, sessionDir, stagingRoot } from './staging.js';

const managers = new WeakMap<ServerDeps, MultipartManager>();

/** The server's manager, created on first use. */
export function multipartManager(deps: ServerDeps, options?: ManagerOptions): MultipartManager {
  let manager = managers.get(deps);
  if (!manager) {
    manager = new MultipartManager(deps, options);
    managers.set(deps, manager);
  }
  return manager;
}
