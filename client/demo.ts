/**
 * `ferry demo` (`npm run demo`): the newcomer's first run. Brings the
 * embedded stack up if it is not running, writes a sales CSV like the seed
 * incident's, starts a pipeline for session "demo" and drives it with the
 * scripted coder/validator/reporter agent, then prints the report computed
 * from the verified CSV, the timeline and where to look in the Web UI.
 */
import path from 'node:path';
import { taskQueueSetting } from '../core/config';
import { pipelineWorkflowId } from '../core/pipeline';
import { blobStoreFromConfig } from '../activities/s3BlobStore';
import { formatTimeline } from './commands';
import { loadConfig, readStackState, stackDir } from './config';
import { runDemoAgent } from './demoAgent';
import { analyseWorkflow } from './history';
import { formatExecSummary } from './pipelineCommands';
import { PipelineClient } from './pipelineClient';
import { writeDemoInput } from './sampleData';
import { isPidAlive } from './managedProcess';
import { DEFAULT_PORTS } from './ports';
import { startStack } from './stack';
import { connectClient } from './temporal';

const SESSION = 'demo';

export async function runDemo(print: (text: string) => void, report: (line: string) => void): Promise<void> {
  const state = readStackState();
  if (!state?.services.every((s) => isPidAlive(s.pid))) {
    await startStack({ detach: true, ports: DEFAULT_PORTS, taskQueue: taskQueueSetting(process.env), report });
  } else {
    report(`using the running ferry stack in ${stackDir()}`);
  }
  const input = writeDemoInput(path.join(stackDir(), 'demo', 'input'));
  const config = loadConfig();
  const { client, close } = await connectClient(config);
  try {
    const pipelines = new PipelineClient(client, config.temporal.taskQueue);
    const { workflowId } = await pipelines.start({ sessionId: SESSION, inputs: [{ path: input }] });
    report(`pipeline ${workflowId} started: provisioning session "${SESSION}", syncing and verifying ${input} into data/ …`);
    const result = await runDemoAgent(pipelines, workflowId, (step, executed) => {
      report(`[${step.stage}] ${step.what}: ${formatExecSummary(executed)}`);
      if (step.request.code.startsWith('ls ')) print(executed.stdoutTail.trimEnd());
    });
    const reportFile = result.stages.at(-1)?.artifacts?.files.find((f) => f.path === 'report.md');
    if (!reportFile) throw new Error('the reporter stage collected no report.md');
    const blobs = blobStoreFromConfig(config.s3);
    print('');
    print((await blobs.getBlob(reportFile.sha256)).toString('utf8').trimEnd());
    print('');
    print(`every stage checks the session and re-verifies data/ on the target before its first execution (ferry timeline ${workflowId}):`);
    print(formatTimeline(await analyseWorkflow(client, config, workflowId, 30_000)));
    print('');
    print(`report.md is in S3 as ${reportFile.key} (sha256 ${reportFile.sha256.slice(0, 16)}…)`);
    print(`the pipeline's state:  node bin/ferry.js status ${pipelineWorkflowId(SESSION)}`);
    print(`the stack keeps running for the Web UI (${config.temporal.webUiUrl}); stop it with: node bin/ferry.js down`);
  } finally {
    await close();
  }
}
