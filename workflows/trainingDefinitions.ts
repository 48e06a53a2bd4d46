/**
 * Signals and queries of the training workflow, shared by the workflow, the
 * CLI and tests. Side-effect free.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ResyncSignalInput, StopSignalInput, TrainingProgress } from '../core/training';

/** State, pid, last log lines and bytes shipped. */
export const trainingProgressQuery = defineQuery<TrainingProgress>('progress');
/** SIGTERM the command, SIGKILL after the grace period; the run then ends with `stopped: true`. */
export const stopTrainingSignal = defineSignal<[StopSignalInput?]>('stop');
/** Land a new snapshot of the project; restart the command in it when asked. */
export const resyncTrainingSignal = defineSignal<[ResyncSignalInput?]>('resync');
