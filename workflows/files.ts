/**
 * sessionFilesWorkflow: what a session folder holds on its target, hashed
 * there now (`ferry files`). A workflow, not a direct call, so it reaches
 * every kind the workers can reach — with their credentials, not the CLI's —
 * and the listing is in history with the boot id it was taken on.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import { unsafePathReason } from '../core/paths';
import { sessionIdProblem } from '../core/sync';
import { DEFAULT_TARGET, targetRefProblem, type CollectedFiles, type TargetRef } from '../core/target';
import { sessionStep, stepFailure, verifyStep } from './steps';

const { provisionSession } = proxyActivities<FerryActivities>(sessionStep);
const { listSessionFiles } = proxyActivities<FerryActivities>(verifyStep);

export interface SessionFilesInput {
  sessionId: string;
  /** Default `{ kind: 'local' }`. */
  target?: TargetRef;
  /** Folder inside the session (default data). */
  dest?: string;
}

export interface SessionFilesResult extends CollectedFiles {
  sessionId: string;
  target: TargetRef;
  /** The target in one line. */
  description: string;
  dest: string;
  bootId: string;
}

export async function sessionFilesWorkflow(input: SessionFilesInput): Promise<SessionFilesResult> {
  const dest = input?.dest ?? 'data';
  const target = input?.target ?? DEFAULT_TARGET;
  const problems = [sessionIdProblem(input?.sessionId), targetRefProblem(target), unsafePathReason(dest) && `dest ${JSON.stringify(dest)}: ${unsafePathReason(dest)}`].filter(
    (problem): problem is string => typeof problem === 'string',
  );
  if (problems.length) {
    throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: `invalid files input: ${problems.join('; ')}`, details: [{ problems }], nonRetryable: true });
  }
  const step = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      throw stepFailure(name, err);
    }
  };
  const session = await step('provisionSession', () => provisionSession({ sessionId: input.sessionId, target, purpose: 'inspect' }));
  const listing = await step('listSessionFiles', () => listSessionFiles({ session, dir: dest }));
  return { sessionId: input.sessionId, target: session.target, description: session.description ?? target.kind, dest, ...listing };
}
