/** The deploy/ templates with their ${PLACEHOLDERS} filled, as `envsubst` would. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../client/tools';

export const TEMPLATE_VALUES: Record<string, string> = {
  ACCOUNT_ID: '123456789012',
  REGION: 'us-east-1',
  VERSION: '0.1.0',
  CLUSTER: 'ferry-test',
  BUCKET: 'ferry-test-bucket',
  PRIVATE_SUBNETS: 'subnet-0aaa,subnet-0bbb',
  AGENT_SECURITY_GROUP: 'sg-0agent',
  TEMPORAL_ADDRESS: 'ferry.a1b2c.tmprl.cloud:7233',
  TEMPORAL_NAMESPACE: 'ferry.a1b2c',
};

/** Parses deploy/<file> after substituting `values`; an unknown placeholder is an error. */
export function deployTemplate<T>(file: string, values: Record<string, string> = TEMPLATE_VALUES): T {
  const text = readFileSync(path.join(repoRoot(), 'deploy', file), 'utf8').replace(/\$\{(\w+)\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`deploy/${file}: no value for \${${name}}`);
    return values[name];
  });
  return JSON.parse(text) as T;
}
