/**
 * `npm run bundle`: builds the workflow code once, ahead of time, into one
 * file (default dist/workflow-bundle.js). Production workers load it via
 * FERRY_WORKFLOW_BUNDLE and start in well under a second instead of running
 * webpack on every start; every worker of a deployment runs identical code.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main(): Promise<void> {
  const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'workflow-bundle.js'));
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, code);
  process.stdout.write(`wrote ${out} (${(code.length / 1024).toFixed(0)} KiB); run workers with FERRY_WORKFLOW_BUNDLE=${out}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry bundle: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
