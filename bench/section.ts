/** What every benchmark section gets from the run, and what it hands back. */
import type { TestStack } from '../test/support/testStack';
import type { DataSet, DataSetName } from './data';
import type { BenchOptions } from './options';
import type { Peer, PeerName } from './processes';
import type { CountingRig } from './requests';
import type { Target } from './results';

export interface BenchContext {
  stack: TestStack;
  options: BenchOptions;
  /** Scratch folder of this run, removed at its end. */
  work: string;
  dataRoot: string;
  /** A data set, generated (or verified) in bench/.data on first use. */
  dataSet(name: DataSetName): Promise<DataSet>;
  /** The peers this run has, pointed at the stack's S3 server. */
  peers: Peer[];
  /** Peers this run lacks, and why (only outside CI: under CI=true a missing peer stops the run). */
  missingPeers: MissingPeer[];
  /** The untimed request-counting worker, agent and proxy, started on first use. */
  countingRig(): Promise<CountingRig>;
  progress(text: string): void;
}

export interface SectionResult {
  /** Raw figures for results.json. */
  data: unknown;
  targets: Target[];
  errors: string[];
  /** Detailed tables for stdout, printed above the summary. */
  report: string;
}

export type Section = (ctx: BenchContext) => Promise<SectionResult>;

export interface MissingPeer {
  name: PeerName;
  reason: string;
}
