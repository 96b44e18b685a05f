/**
 * The slash-command ack: exactly one, within the deadline, carrying the bot's private answer
 * when it comes first.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type AckAnswer, AckGate } from '../../adapters/slack/ack-gate.js';

describe('AckGate', () => {
  let acks: (AckAnswer | undefined)[];
  let errors: unknown[];
  const ack = async (answer?: AckAnswer) => {
    acks.push(answer);
  };

  beforeEach(() => {
    vi.useFakeTimers();
    acks = [];
    errors = [];
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends a quick private answer as the ack itself', async () => {
    const gate = new AckGate(ack, 250, (e) => errors.push(e));
    const answer: AckAnswer = { response_type: 'ephemeral', text: 'Usage: /imagine <prompt>' };
    expect(await gate.answer(answer)).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    await gate.empty();
    expect(acks).toEqual([answer]);
  });

  it('acks empty at the deadline; a later answer must go another way', async () => {
    const gate = new AckGate(ack, 250, (e) => errors.push(e));
    await vi.advanceTimersByTimeAsync(249);
    expect(acks).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(acks).toEqual([undefined]);
    expect(gate.acked).toBe(true);
    expect(await gate.answer({ response_type: 'ephemeral', text: 'late' })).toBe(false);
    expect(acks).toEqual([undefined]);
  });

  it('acks empty when the bot answers publicly first, and only once however often it is asked', async () => {
    const gate = new AckGate(ack, 250, (e) => errors.push(e));
    await Promise.all([gate.empty(), gate.empty()]);
    await vi.advanceTimersByTimeAsync(1000);
    await gate.empty();
    expect(acks).toEqual([undefined]);
  });

  it('reports a failed ack and lets the answer go another way', async () => {
    const failure = new Error('socket closed');
    const gate = new AckGate(
      async () => {
        throw failure;
      },
      250,
      (e) => errors.push(e),
    );
    expect(await gate.answer({ response_type: 'ephemeral', text: 'x' })).toBe(false);
    expect(errors).toEqual([failure]);
  });
});
