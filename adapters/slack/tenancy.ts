/**
 * Which workspace a job belongs to, so a button click from another workspace (the same app
 * installed in several: every one sends signed requests) never acts on this one's jobs.
 */
import { decodeButton } from '../../commands/custom-id.js';

/** A job's platform and team, by id; undefined for a job that does not exist. */
export type JobTenancy = (jobId: string) => { platform: string; teamId: string | undefined } | undefined;

export interface JobsView {
  jobs: { get(id: string): { spec: { reply: { platform: string; teamId?: string } } } | undefined };
}

/** Reads the store; without one (tests with a stand-in bot) nothing is known and nothing refused. */
export function jobTenancy(store: JobsView | undefined): JobTenancy {
  return (jobId) => {
    const job = store?.jobs.get(jobId);
    return job ? { platform: job.spec.reply.platform, teamId: job.spec.reply.teamId } : undefined;
  };
}

/**
 * Whether a click on the button `actionId` from workspace `teamId` may act: buttons that name no
 * known job are left to the bot (which answers them), a known job must be a Slack job of the
 * clicker's own workspace.
 */
export function mayAct(tenancy: JobTenancy, actionId: string, teamId: string | undefined): boolean {
  const ref = decodeButton(actionId);
  if (!ref) return true;
  const job = tenancy(ref.jobId);
  if (!job) return true;
  if (job.platform !== 'slack') return false;
  return job.teamId === undefined || job.teamId === teamId;
}
