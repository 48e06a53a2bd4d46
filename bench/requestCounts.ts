/** What the counting proxy (bench/s3CountingProxy.ts) answers, shared with its reader (bench/requests.ts) without loading the worker. */
import type { S3Operation } from '../test/support/s3FaultProxy';

export const COUNTS_PATH = '/__bench/requests';

/** Header-signed: the worker's AWS SDK, rclone, s5cmd. Presigned: the runtime agent's downloads. */
export type Signing = 'header' | 'presigned';

export interface OperationTally {
  requests: number;
  /** Answered with a status of 400 or above (a HEAD for a blob not stored yet is a 404). */
  failed: number;
  /** Body bytes sent to S3. */
  requestBytes: number;
  /** Body bytes S3 sent back. */
  responseBytes: number;
}

/** Cumulative tallies per signing and operation. */
export type RequestCounts = Record<Signing, Partial<Record<S3Operation, OperationTally>>>;

