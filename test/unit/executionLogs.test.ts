/** core/executionLogs: where an execution's log chunks live and how a reader continues a stream from a byte offset. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunksFromListing, executionLogChunkKey, executionLogPrefix, readsFrom, type LogChunk } from '../../core/executionLogs';
import { pipelineCarryOverProblems, type PipelineCarryOver } from '../../core/pipeline';

const chunk = (offset: number, size: number): LogChunk => ({ key: `k${offset}`, stream: 'stdout', offset, size });

describe('execution log keys', () => {
  it('puts chunks under the store prefix, the workflow and the execution, keyed by zero-padded offset so listing order is log order', () => {
    const prefix = executionLogPrefix('ferry/', 'pipeline-s1', 'e1-coder-x');
    assert.equal(prefix, 'ferry/executions/pipeline-s1/e1-coder-x/');
    assert.equal(executionLogChunkKey(prefix, 'stderr', 42), 'ferry/executions/pipeline-s1/e1-coder-x/stderr/000000000000042.log');
    assert.ok(executionLogChunkKey(prefix, 'stdout', 9) < executionLogChunkKey(prefix, 'stdout', 10));
  });

  it('encodes workflow ids, so no id reaches into another execution folder', () => {
    assert.equal(executionLogPrefix('', 'a/../b', 'e1'), 'executions/a%2F..%2Fb/e1/');
  });

  it('reads a listing back as chunks per stream in offset order, ignoring other keys', () => {
    const prefix = executionLogPrefix('', 'w', 'e');
    const listed = chunksFromListing(prefix, [
      { key: executionLogChunkKey(prefix, 'stdout', 10), size: 5 },
      { key: executionLogChunkKey(prefix, 'stdout', 0), size: 10 },
      { key: executionLogChunkKey(prefix, 'stderr', 0), size: 3 },
      { key: `${prefix}stdout/notes.txt`, size: 1 },
      { key: 'executions/w/other/stdout/000000000000000.log', size: 7 },
    ]);
    assert.deepEqual(listed.stdout.map((c) => [c.offset, c.size]), [[0, 10], [10, 5]]);
    assert.deepEqual(listed.stderr.map((c) => [c.offset, c.size]), [[0, 3]]);
  });
});

describe('readsFrom', () => {
  it('continues from a position inside a chunk and through the next', () => {
    assert.deepEqual(readsFrom([chunk(0, 10), chunk(10, 5)], 4).map((r) => [r.chunk.offset, r.from, r.to]), [[0, 4, 10], [10, 0, 5]]);
  });

  it('stops at a gap: bytes after a chunk not shipped yet wait for a later pass', () => {
    assert.deepEqual(readsFrom([chunk(0, 10), chunk(20, 5)], 0).map((r) => r.chunk.offset), [0]);
    assert.deepEqual(readsFrom([chunk(20, 5)], 10), []);
  });

  it('never repeats a byte when a retried attempt re-shipped overlapping chunks from an older offset', () => {
    // Attempt 1 shipped [0,4) and [4,9); attempt 2 resumed from offset 0 and shipped [0,12) over the first chunk.
    const chunks = [chunk(0, 12), chunk(4, 5)];
    assert.deepEqual(readsFrom(chunks, 0).map((r) => [r.chunk.offset, r.from, r.to]), [[0, 0, 12]]);
    // A reader that had read 4 bytes before the rewrite reads bytes 4..12 once.
    assert.deepEqual(readsFrom(chunks, 4).map((r) => [r.chunk.offset, r.from, r.to]), [[0, 4, 12]]);
    assert.deepEqual(readsFrom(chunks, 12), []);
  });
});

describe('pipeline carry-over with execution records', () => {
  const carryOver = (executions: unknown): PipelineCarryOver =>
    ({
      state: { sessionId: 's', status: 'running', stages: [{ name: 'coder', status: 'running', executions: 1 }], inputs: [], restartsDetected: 0, executionsTotal: 1, run: 1, executions },
      timeline: [],
      executionCounter: 1,
      pendingInputs: [],
      stageIndex: 0,
      stageFirstExecutionDone: true,
    }) as PipelineCarryOver;

  it('accepts records with their lookup fields, and states recorded before records existed', () => {
    const record = { requestId: 'r', executionId: 'e1-coder-x', stage: 'coder', status: 'finished', startedAt: '2026-01-01T00:00:00Z', logChunks: 'executions/p/e1/', inputsVerified: true };
    assert.deepEqual(pipelineCarryOverProblems(carryOver([record])), []);
    assert.deepEqual(pipelineCarryOverProblems(carryOver(undefined)), []);
  });

  it('names a record without the fields readers find executions by', () => {
    const [problem] = pipelineCarryOverProblems(carryOver([{ requestId: 'r', status: 'running' }]));
    assert.match(problem, /state\.executions\[0\] must be an object with string requestId, executionId/);
    assert.match(pipelineCarryOverProblems(carryOver('many'))[0], /state\.executions must be an array/);
  });
});
