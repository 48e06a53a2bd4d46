/**
 * The `local` target: the runtime agent on this machine (`ferry up` starts
 * it; docker-compose runs it as a container), holding each session under
 * `sessions/<id>` of its root. The embedded default.
 */
import { ConfigError } from '../../core/config';
import { sessionRoot } from '../../core/sync';
import { sessionFolders, type TargetRef } from '../../core/target';
import type { AgentEndpoint } from '../agentClient';
import type { TargetTransfer } from '../blobStore';
import { AgentReach } from './agentReach';
import { TargetOptionsError, type TargetBackend, type TargetDriver } from './driver';

export interface LocalTargetOptions extends TargetRef {
  kind: 'local';
}

export function createLocalBackend(agent: AgentEndpoint, blobs: TargetTransfer): TargetBackend<LocalTargetOptions> {
  const reachOf = (sessionId: string) => new AgentReach({ endpoint: agent, base: sessionRoot(sessionId), blobs, description: `local agent ${agent.url} session ${sessionId}` });
  return {
    async provision(request) {
      const reach = reachOf(request.sessionId);
      await reach.makeDirs(sessionFolders(request.purpose));
      const health = await reach.health();
      return {
        sessionId: request.sessionId,
        target: request.target,
        description: `local agent ${agent.url}`,
        agentUrl: agent.url,
        bootId: health.bootId,
        root: `${health.root}/${sessionRoot(request.sessionId)}`,
        details: {},
      };
    },
    // The configured agent, not the handle's URL: the token is for this one only.
    reach: (session) => reachOf(session.sessionId),
    peek: (request) => reachOf(request.sessionId),
    async release(session, options) {
      if (!options.removeFiles) return { released: true, detail: 'the session folder stays on the local agent' };
      const { processesStopped } = await reachOf(session.sessionId).removeSession();
      return { released: true, detail: `session folder removed, ${processesStopped} running processes stopped` };
    },
  };
}

export const localTarget: TargetDriver<LocalTargetOptions> = {
  kind: 'local',
  summary: "the runtime agent on this machine (started by `ferry up`), one folder per session under its root; the default",
  spec: 'local',
  settings: [
    { name: 'FERRY_LOCAL_AGENT_URL', description: 'URL of the local runtime agent (`ferry up` sets it)' },
    { name: 'FERRY_LOCAL_AGENT_TOKEN', description: 'bearer token of the local runtime agent (`ferry up` sets it)' },
  ],
  lifetime: 'persistent',
  parseSpec: (text) => {
    if (text !== '') throw new TargetOptionsError([`local takes no options, got "local:${text}"`]);
    return { kind: 'local' };
  },
  normalize: (raw) => {
    const extra = Object.keys(raw).filter((key) => key !== 'kind');
    if (extra.length) throw new TargetOptionsError([`local target takes no options, got ${extra.join(', ')}`]);
    return { kind: 'local' };
  },
  configure: ({ settings, blobs }) => {
    const url = settings('FERRY_LOCAL_AGENT_URL');
    const token = settings('FERRY_LOCAL_AGENT_TOKEN');
    if (url === undefined) return 'no local runtime agent: start the stack with `ferry up`, or set FERRY_LOCAL_AGENT_URL and FERRY_LOCAL_AGENT_TOKEN';
    if (!/^https?:\/\/\S+$/.test(url)) throw new ConfigError('FERRY_LOCAL_AGENT_URL', `expected an http(s) URL, got ${JSON.stringify(url)}`);
    if (token === undefined) throw new ConfigError('FERRY_LOCAL_AGENT_TOKEN', 'required when FERRY_LOCAL_AGENT_URL is set');
    return createLocalBackend({ url: url.replace(/\/$/, ''), token }, blobs);
  },
};
