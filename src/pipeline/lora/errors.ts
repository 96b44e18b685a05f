/**
 * A LoRA file that cannot be applied: not safetensors, a format Atelier does not read, made for
 * another model, or missing. The message names the file and says what is supported (the operator
 * reads it in the log); the user is told which LoRA could not be used. It is a PipelineError so
 * that it crosses from the pipeline process with its user message intact.
 */
import { PipelineError } from '../../errors.js';

/** What Atelier reads, for the messages that refuse a file. */
export const SUPPORTED_LORA_FORMATS =
  'plain LoRA safetensors for the SD3.5 MMDiT: lora_up/lora_down (or lora_A/lora_B) pairs with an optional alpha, ' +
  'keyed as kohya (lora_unet_joint_blocks_…), diffusers/PEFT (transformer.transformer_blocks.….lora_A.weight), ' +
  'ComfyUI (diffusion_model.joint_blocks.…), OneTrainer (lora_transformer_…) or SimpleTuner (lycoris_…)';

export class LoraError extends PipelineError {
  constructor(
    /** The LoRA's name as users pick it. */
    readonly lora: string,
    /** The file at fault. */
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(
      message,
      `The LoRA “${lora}” can't be used: its file is not one Atelier can apply to this model. An admin can see why in the log.`,
      options,
    );
  }
}
