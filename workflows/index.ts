export { syncWorkflow } from './sync';
export { pipelineWorkflow } from './pipeline';
export { trainingWorkflow } from './training';
export { sessionFilesWorkflow } from './files';
