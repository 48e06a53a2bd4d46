export { syncWorkflow } from './sync';
