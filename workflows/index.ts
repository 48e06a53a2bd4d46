export { syncWorkflow } from './sync';
export { pipelineWorkflow } from './pipeline';
