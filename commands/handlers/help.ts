/** /help: the commands, the text flags, the buttons and the reactions, in one private message. */
import { formatLoraWeight, MAX_LORAS } from '../../src/jobs/loras.js';
import { usage } from '../text-args.js';
import type { CommandDef, Invocation } from '../types.js';
import { type BotContext, isAdmin, tell } from './context.js';

export async function help(ctx: BotContext, inv: Invocation): Promise<void> {
  const admin = isAdmin(ctx, inv.requester);
  const lines = ['**Atelier** makes images with Stable Diffusion 3.5.', ''];
  for (const c of ctx.commands()) {
    if (c.adminOnly && !admin) continue;
    if (c.subcommands) {
      lines.push(`/${c.name} ${c.subcommands.map((s) => s.name).join('|')} — ${c.description}`);
      continue;
    }
    lines.push(`/${c.name} — ${c.description}`);
  }
  const imagine = ctx.commands().find((c) => c.name === 'imagine') as CommandDef;
  lines.push(
    '',
    `Typed: ${usage('imagine', imagine.options ?? [])}`,
    'Buttons on a result: U1–U4 one image alone · V1–V4 variations · 🎲 Vary (Subtle) / Vary (Strong) · 🔄 reroll · ⬆️ upscale 2× · ⭐ share · ✖️ delete.',
    'Remix: /settings remix:true makes 🔄 Reroll and the Vary/V buttons open a form to edit the prompt first.',
    'Reactions: 🔄 on any result rerolls it for you · ⭐ shares it to the showcase channel · ✖️ (yours) deletes it.',
  );
  const models = (ctx.app.validation().models ?? []).map((m) => m.name);
  if (models.length > 1) {
    lines.push(
      `Models: ${models.join(', ')} (model:<name>, typed --model <name>; mode:draft, typed --fast: the fastest loaded one with its own defaults; /settings model:<name> makes one your default).`,
    );
  }
  const styles = Object.keys(ctx.app.validation().styles ?? {});
  if (styles.length > 0) {
    lines.push(
      `Styles: ${styles.join(', ')} (style:<name>, typed --style <name>; /settings style:<name> makes one your default).`,
    );
  }
  const loras = (ctx.app.validation().loras ?? []).map((l) => `${l.name} (${formatLoraWeight(l.weight)})`);
  if (loras.length > 0) {
    lines.push(
      `LoRAs: ${loras.join(', ')} (lora:<name>[:weight], up to ${MAX_LORAS}; typed --lora <name>[:weight], again for another).`,
    );
  }
  await inv.replyPrivately(tell(lines.join('\n')));
}
