/**
 * Platform-neutral jobs. Adapters turn chat input into a JobSpec; the scheduler runs it and
 * streams JobEvents back to whoever owns the conversation (`reply`). Nothing here knows a chat
 * platform or the model.
 */
import type { SamplerName } from '../vocabulary.js';

export type JobKind = 'txt2img' | 'reroll' | 'variation' | 'upscale';

/** Kinds that start from an earlier image (img2img at a strength) rather than from noise. */
export const isImg2img = (kind: JobKind): boolean => kind === 'variation' || kind === 'upscale';

/** Who asked. `teamId` is the Discord guild or Slack workspace (absent in DMs and the playground). */
export interface Requester {
  platform: string;
  userId: string;
  displayName: string;
  teamId?: string;
  /** Platform role ids, checked against the configured admin roles. */
  roleIds?: string[];
  /**
   * The platform says this user administers the team (Discord: Manage Server): they may change
   * their team's Atelier settings (showcase channel, limits), not the bot's queue.
   */
  isTeamAdmin?: boolean;
}

/**
 * Where to answer: opaque to the core, owned by one adapter, stored as JSON so a restart can
 * still post a result into the original conversation.
 */
export interface ReplyTarget {
  platform: string;
  channelId: string;
  threadId?: string;
  teamId?: string;
  /** The message the adapter posted for this job (queue position, progress, result). */
  messageId?: string;
  /** Anything else the adapter needs (interaction token, response URL …). */
  extra?: Record<string, unknown>;
}

/**
 * A named prompt preset (config `styles`), as it was when the job was asked for: rerolls,
 * variations and upscales keep it, and the PNG says which it was, even after the operator edits it.
 */
export interface JobStyle {
  name: string;
  /** The prompt template; `{prompt}` stands for the user's prompt. */
  prompt: string;
  /** Added to the user's negative prompt. */
  negative: string;
}

/**
 * The model a job runs on (config `models.list`), as it was when the job was asked for: rerolls,
 * variations and upscales keep it, even after a restart, and are refused if it is no longer
 * configured. `hash` identifies the checkpoint (A1111's `Model hash`), `label` is its file name.
 */
export interface JobModel {
  /** The configured name users pick (`/imagine model:`). */
  name: string;
  /** First 10 hex digits of the sha256 of the checkpoint's safetensors header. */
  hash?: string;
  /** The checkpoint's name (A1111's `Model`). */
  label?: string;
}

/**
 * A LoRA a job applies (config `loras.allowed`), as it was when the job was asked for: rerolls,
 * variations and upscales keep it (jobs/loras.ts).
 */
export interface JobLora {
  /** The configured name users pick (`/imagine lora:`). */
  name: string;
  /** Its file in the LoRA folder. */
  file: string;
  /** Strength, −2 … 2. */
  weight: number;
}

/** How far a variation moves from its image: the Vary (Subtle) and Vary (Strong) buttons. */
export type VariationKind = 'subtle' | 'strong';

/** Generation parameters after validation: every field is filled and in range. */
export interface JobParams {
  prompt: string;
  negativePrompt: string;
  aspect: string;
  width: number;
  height: number;
  seed: number;
  steps: number;
  guidance: number;
  count: number;
  sampler: SamplerName;
  /** img2img strength for variations and upscales (0 < strength ≤ 1). */
  strength?: number;
  /** The style the prompt is dressed in (`prompt` stays what the user typed). */
  style?: JobStyle;
  /** A variation from Vary (Subtle) or Vary (Strong); absent for V1–V4 (`generation.variation.strength`). */
  variation?: VariationKind;
  /** LoRAs merged into the model for this job (at most 3); absent: none. */
  loras?: JobLora[];
  /** The model it runs on; absent: the pipeline's default model (jobs from before several models). */
  model?: JobModel;
}

export interface JobSpec {
  kind: JobKind;
  requester: Requester;
  params: JobParams;
  /** For reroll / variation / upscale: the job and the image (0-based) it starts from. */
  parent?: { jobId: string; imageIndex?: number };
  reply: ReplyTarget;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobImage {
  /** Path of the PNG (with embedded parameters) under the data dir. */
  path: string;
  width: number;
  height: number;
  seed: number;
}

export interface JobResult {
  images: JobImage[];
  /** The composite grid for count > 1 (PNG), else absent. */
  gridPath?: string;
  model: string;
  promptTruncated?: boolean;
}

export interface JobRecord {
  id: string;
  spec: JobSpec;
  state: JobState;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Times the job was started; a restart mid-run starts it again. */
  attempts: number;
  error?: string;
  result?: JobResult;
}

export type JobEvent =
  /** `waitingForRunner`: no runner can take jobs now (a gateway with no live worker); it waits for one. */
  | { type: 'queued'; jobId: string; position: number; etaMs: number; waitingForRunner?: true }
  | { type: 'started'; jobId: string; etaMs: number }
  | { type: 'progress'; jobId: string; step: number; total: number; preview?: Uint8Array }
  | { type: 'done'; jobId: string; result: JobResult }
  | { type: 'failed'; jobId: string; reason: string; userMessage: string }
  | { type: 'cancelled'; jobId: string; by: string };

export type JobEventType = JobEvent['type'];
