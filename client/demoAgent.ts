/**
 * A scripted agent playing the seed's three roles against a running
 * pipeline, through the typed client only — what a real coder, validator
 * and reporter agent would send.
 *   coder      looks at ./data/, totals sales per category into artifacts/
 *   validator  recomputes the totals from the CSV and checks the coder's file
 *   reporter   writes artifacts/report.md
 */
import type { ExecuteRequest, ExecuteResult, PipelineResult } from '../core/pipeline';
import type { PipelineClient } from './pipelineClient';

export const DEMO_CSV = 'Dat-fresh-food-claude.csv';

const CODER_ANALYSIS = `
import csv, json, os
totals, rows = {}, 0
with open('data/${DEMO_CSV}', encoding='utf-8') as f:
    for row in csv.DictReader(f):
        rows += 1
        totals[row['카테고리']] = totals.get(row['카테고리'], 0) + int(row['금액'])
os.makedirs('artifacts', exist_ok=True)
with open('artifacts/category_totals.json', 'w', encoding='utf-8') as out:
    json.dump({'rows': rows, 'totals': totals}, out, ensure_ascii=False, indent=2, sort_keys=True)
print(f'{rows} rows, {len(totals)} categories')
`;

const VALIDATOR_CHECK = `
import csv, json, sys
expected, rows = {}, 0
with open('data/${DEMO_CSV}', encoding='utf-8') as f:
    for row in csv.DictReader(f):
        rows += 1
        assert int(row['수량']) * int(row['단가']) == int(row['금액']), f'bad amount in {row}'
        expected[row['카테고리']] = expected.get(row['카테고리'], 0) + int(row['금액'])
claimed = json.load(open('artifacts/category_totals.json', encoding='utf-8'))
ok = claimed['rows'] == rows and claimed['totals'] == expected
with open('artifacts/validation.json', 'w', encoding='utf-8') as out:
    json.dump({'ok': ok, 'rows': rows, 'categories': len(expected)}, out, indent=2)
print('totals verified' if ok else 'totals DO NOT match the data')
sys.exit(0 if ok else 1)
`;

const REPORTER_WRITE = `
import hashlib, json
totals = json.load(open('artifacts/category_totals.json', encoding='utf-8'))
validation = json.load(open('artifacts/validation.json', encoding='utf-8'))
digest = hashlib.sha256(open('data/${DEMO_CSV}', 'rb').read()).hexdigest()
grand = sum(totals['totals'].values())
lines = ['# 2023 fresh-food sales by category', '',
         f"Source: data/${DEMO_CSV} ({totals['rows']} rows, sha256 {digest[:16]}…)",
         f"Validator: {'totals verified against the data' if validation['ok'] else 'MISMATCH'}", '',
         '| category | sales (KRW) | share |', '|---|---:|---:|']
for category, amount in sorted(totals['totals'].items(), key=lambda kv: -kv[1]):
    lines.append(f'| {category} | {amount:,} | {amount / grand:.1%} |')
lines.append(f'| **total** | **{grand:,}** | 100% |')
open('artifacts/report.md', 'w', encoding='utf-8').write('\\n'.join(lines) + '\\n')
print('report written')
`;

export interface DemoStep {
  stage: string;
  what: string;
  request: ExecuteRequest;
}

export const DEMO_SCRIPT: { stage: string; steps: DemoStep[]; summary: string }[] = [
  {
    stage: 'coder',
    summary: 'category totals written to artifacts/category_totals.json',
    steps: [
      { stage: 'coder', what: 'look at the inputs', request: { language: 'bash', code: 'ls -la ./data/' } },
      { stage: 'coder', what: 'total sales per category', request: { language: 'python', code: CODER_ANALYSIS } },
    ],
  },
  {
    stage: 'validator',
    summary: 'totals recomputed from the data and checked',
    steps: [{ stage: 'validator', what: 'recompute and compare', request: { language: 'python', code: VALIDATOR_CHECK } }],
  },
  {
    stage: 'reporter',
    summary: 'report written to artifacts/report.md',
    steps: [{ stage: 'reporter', what: 'write the report', request: { language: 'python', code: REPORTER_WRITE } }],
  },
];

/** Plays every stage of DEMO_SCRIPT; a non-zero exit stops the run with an error naming the step. */
export async function runDemoAgent(
  pipelines: PipelineClient,
  workflowId: string,
  onExecuted: (step: DemoStep, result: ExecuteResult) => void = () => undefined,
): Promise<PipelineResult> {
  for (const stage of DEMO_SCRIPT) {
    for (const step of stage.steps) {
      const result = await pipelines.execute(workflowId, step.request);
      onExecuted(step, result);
      if (result.exitCode !== 0) {
        throw new Error(`${step.stage}: "${step.what}" exited ${result.exitCode ?? result.signal}: ${result.stderrTail.trim().split('\n').slice(-3).join(' | ')}`);
      }
    }
    await pipelines.finishStage(workflowId, stage.summary, { stage: stage.stage });
  }
  return pipelines.result(workflowId);
}
