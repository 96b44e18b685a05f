/** Downloads of model sets from the Hugging Face hub (`atelier models pull`). */
export { type DownloadOutcome, downloadFile, type FileProgress } from './download.js';
export { HubError } from './errors.js';
export { type HubFileRef, headFile, type RemoteFile } from './http.js';
export { formatBytes, formatProgressLine, SpeedMeter } from './progress.js';
export {
  DEFAULT_HUB_ENDPOINT,
  type PullOptions,
  type PullProgress,
  type PullResult,
  pullModelSet,
} from './pull.js';
export {
  HUB_SET_NAMES,
  type HubModelSet,
  type HubSetFile,
  type HubSetName,
  type HubSetOptions,
  hubModelSet,
  isHubSetName,
} from './sets.js';
