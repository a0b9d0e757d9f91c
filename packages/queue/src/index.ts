// @kiln/queue: the distribution built on many machines. A coordinator turns
// the plan into BullMQ jobs on Redis as their inputs are built; workers build
// them in sandboxes and hand the packages over an S3 artifact store; the
// coordinator merges them into the signed index. See coordinator.ts, worker.ts.

export {
  QueueError,
  QUEUE_NAME,
  parseRedisUrl,
  jobIdFor,
  jobPayloadSchema,
  attemptResultSchema,
  type JobPayload,
  type AttemptResult,
  type RedisTarget,
} from "./messages.js";
export { openArtifacts, type Artifacts } from "./artifacts.js";
export {
  openCoordinator,
  type Coordinator,
  type CoordinatorEvent,
  type CoordinatorOptions,
  type LaneEntry,
} from "./coordinator.js";
export { startWorker, type RunningWorker, type WorkerEvent, type WorkerOptions } from "./worker.js";
export { laneReport, renderLanes, writeLaneReport, type LaneReport } from "./lanes.js";
export { simulate, syntheticGraph, type SimJob, type SimResult, type SimOptions } from "./simulate.js";
