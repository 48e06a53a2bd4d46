export { syncWorkflow } from './sync';
export { trainingWorkflow } from './training';
