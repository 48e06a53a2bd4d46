/**
 * PipelineClient.execute's resends. The real server fails an update call
 * with a transport error only by chance of timing (the SDK's own gRPC
 * retries absorb most outages; test/faults/embeddedStack.test.ts crashes
 * the real one), so these failures come from a stand-in for the client.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import type { ExecuteResult } from '../../core/pipeline';

/** A gRPC error as @grpc/grpc-js makes it. */
function grpcError(code: number, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
}

/** A client whose execute update answers with `outcomes` in turn, recording the update ids it was sent. */
function clientAnswering(outcomes: (ExecuteResult | Error)[]): { client: Client; updateIds: (string | undefined)[] } {
  const updateIds: (string | undefined)[] = [];
  const handle = {
    executeUpdate: async (_update: unknown, options: { updateId?: string }) => {
      updateIds.push(options.updateId);
      const outcome = outcomes.shift();
      if (outcome === undefined) throw new Error('no more outcomes');
      if (outcome instanceof Error) throw outcome;
      return outcome;
    },
  };
  return { client: { workflow: { getHandle: () => handle } } as unknown as Client, updateIds };
}

const result = { executionId: 'e1-coder', exitCode: 0 } as ExecuteResult;
const request = { language: 'bash' as const, code: 'true' };

describe('PipelineClient.execute', () => {
  it('resends after transport failures with the same update id, and returns the one result', async () => {
    const unavailable = new ServiceError('Workflow Update failed', { cause: grpcError(14, 'Connection dropped') });
    const internal = new ServiceError('Workflow Update Poll failed', { cause: grpcError(13, 'stream reset') });
    const { client, updateIds } = clientAnswering([unavailable, internal, result]);
    const retries: string[] = [];
    const got = await new PipelineClient(client, 'q').execute('pipeline-s', request, { requestId: 'req-1', onRetry: (failure) => retries.push(failure.message) });
    assert.deepEqual(got, result);
    assert.deepEqual(updateIds, ['req-1', 'req-1', 'req-1']);
    assert.deepEqual(retries, ['Workflow Update failed', 'Workflow Update Poll failed']);
  });

  it('without a request id it makes one, and keeps it across resends', async () => {
    const { client, updateIds } = clientAnswering([new ServiceError('Workflow Update failed', { cause: grpcError(14, 'unavailable') }), result]);
    await new PipelineClient(client, 'q').execute('pipeline-s', request);
    assert.equal(updateIds.length, 2);
    assert.match(updateIds[0]!, /^[0-9a-f-]{36}$/);
    assert.equal(updateIds[1], updateIds[0]);
  });

  it('does not resend a refusal, a missing workflow, or past its deadline', async () => {
    const refused = clientAnswering([new WorkflowUpdateFailedError('Workflow Update failed', ApplicationFailure.create({ type: 'InvalidInput', message: 'empty code' }))]);
    await assert.rejects(new PipelineClient(refused.client, 'q').execute('pipeline-s', request), (err: unknown) => err instanceof ExecuteRefusedError && err.type === 'InvalidInput');
    assert.equal(refused.updateIds.length, 1);

    const missing = clientAnswering([new WorkflowNotFoundError('Workflow not found', 'pipeline-s', undefined)]);
    await assert.rejects(new PipelineClient(missing.client, 'q').execute('pipeline-s', request), WorkflowNotFoundError);
    assert.equal(missing.updateIds.length, 1);

    const down = clientAnswering([new ServiceError('Workflow Update failed', { cause: grpcError(14, 'unavailable') })]);
    await assert.rejects(new PipelineClient(down.client, 'q').execute('pipeline-s', request, { retryForMs: 0 }), ServiceError);
    assert.equal(down.updateIds.length, 1);
  });
});
