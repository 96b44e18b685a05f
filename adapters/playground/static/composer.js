/**
 * The message box: Enter sends, Shift+Enter breaks the line, ↑/↓ walk through what this tab sent
 * before, and a list of suggestions follows what is typed (commands, their --flags, choices and
 * the bot's autocomplete), accepted with Tab (or Enter once picked with the arrows).
 */

const HISTORY_KEY = 'atelier.history';
const HISTORY_MAX = 50;
// A prompt the bundled demo model draws right (shapes, colours, counts, positions on plain
// backgrounds: tools/train-demo), which any SD3.5 model draws too.
const DEFAULT_HINT =
  'Try /imagine two small yellow stars on a dark blue background · Enter sends · Shift+Enter new line · ↑ recalls · Tab completes';

export class Composer {
  /**
   * @param {{ form: HTMLFormElement, input: HTMLTextAreaElement, list: HTMLElement, hint: HTMLElement,
   *   onSend: (text: string) => boolean, requestChoices: (command: string, option: string, partial: string) => Promise<any[]> }} options
   */
  constructor(options) {
    this.options = options;
    this.commands = [];
    this.history = loadHistory();
    this.historyIndex = this.history.length;
    this.draft = '';
    this.items = [];
    this.active = -1;
    this.picked = false;
    this.requestSeq = 0;
    const { form, input } = options;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    input.addEventListener('keydown', (event) => this.onKeyDown(event));
    input.addEventListener('input', () => {
      this.autosize();
      this.historyIndex = this.history.length;
      this.refresh();
    });
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    this.showHint(DEFAULT_HINT);
  }

  /** @param {any[]} commands CommandDefs from the server: flattened so subcommands are suggested whole. */
  setCommands(commands) {
    this.commands = commands.flatMap((c) =>
      c.subcommands ? c.subcommands.map((s) => ({ ...s, name: `${c.name} ${s.name}` })) : [c],
    );
    this.topLevel = commands;
  }

  setChannel(channelId) {
    this.options.input.placeholder = `Message #${channelId}`;
    this.options.input.setAttribute('aria-label', `Message #${channelId}`);
  }

  send() {
    const { input } = this.options;
    const text = input.value.trim();
    if (!text) return;
    if (!this.options.onSend(text)) return;
    if (this.history.at(-1) !== text) this.history.push(text);
    this.history = this.history.slice(-HISTORY_MAX);
    sessionStorage.setItem(HISTORY_KEY, JSON.stringify(this.history));
    this.historyIndex = this.history.length;
    input.value = '';
    this.autosize();
    this.close();
    this.showHint(DEFAULT_HINT);
  }

  onKeyDown(event) {
    const { input } = this.options;
    const open = this.items.length > 0;
    if (open && (event.key === 'ArrowDown' || event.key === 'ArrowUp')) {
      event.preventDefault();
      const step = event.key === 'ArrowDown' ? 1 : -1;
      this.setActive((this.active + step + this.items.length) % this.items.length);
      this.picked = true;
      return;
    }
    if (open && (event.key === 'Tab' || (event.key === 'Enter' && this.picked && !event.shiftKey))) {
      event.preventDefault();
      this.accept(this.items[Math.max(this.active, 0)]);
      return;
    }
    if (open && event.key === 'Escape') {
      event.preventDefault();
      this.close();
      return;
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.send();
      return;
    }
    const beforeCaret = input.value.slice(0, input.selectionStart);
    if (event.key === 'ArrowUp' && !beforeCaret.includes('\n') && this.historyIndex > 0) {
      event.preventDefault();
      if (this.historyIndex === this.history.length) this.draft = input.value;
      this.historyIndex -= 1;
      this.fill(this.history[this.historyIndex]);
      return;
    }
    const afterCaret = input.value.slice(input.selectionEnd);
    if (event.key === 'ArrowDown' && !afterCaret.includes('\n') && this.historyIndex < this.history.length) {
      event.preventDefault();
      this.historyIndex += 1;
      this.fill(this.historyIndex === this.history.length ? this.draft : this.history[this.historyIndex]);
    }
  }

  fill(text) {
    const { input } = this.options;
    input.value = text;
    input.setSelectionRange(text.length, text.length);
    this.autosize();
    this.close();
  }

  autosize() {
    const { input } = this.options;
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  /** Works out what is being typed and offers what fits. */
  refresh() {
    const { input } = this.options;
    const before = input.value.slice(0, input.selectionStart);
    const context = this.context(before);
    this.showHint(context.hint ?? DEFAULT_HINT);
    if (context.remote) {
      const seq = ++this.requestSeq;
      const { command, option, partial } = context.remote;
      this.options.requestChoices(command, option, partial).then((choices) => {
        if (seq !== this.requestSeq) return;
        this.show(
          choices.map((c) => ({
            label: c.name,
            detail: '',
            insert: String(c.value),
            replace: partial.length,
          })),
        );
      });
      return;
    }
    this.requestSeq++;
    this.show(context.items ?? []);
  }

  context(before) {
    if (!before.startsWith('/')) return {};
    const naming = /^\/(\S*)(?: (\S*))?$/.exec(before);
    const withSub =
      naming?.[2] !== undefined
        ? this.topLevel?.find((c) => c.name === naming[1] && c.subcommands)
        : undefined;
    if (naming && (naming[2] === undefined || withSub)) {
      const typed = naming[2] === undefined ? naming[1] : `${naming[1]} ${naming[2]}`;
      const items = this.commands
        .filter((c) => c.name.startsWith(typed.toLowerCase()))
        .map((c) => ({
          label: `/${c.name}`,
          detail: c.description,
          insert: `${c.name} `,
          replace: typed.length,
        }));
      return { items, hint: items.length ? undefined : 'No such command: try /help' };
    }
    const command = this.commands
      .filter((c) => before.startsWith(`/${c.name} `) || before === `/${c.name}`)
      .sort((a, b) => b.name.length - a.name.length)[0];
    if (!command) return { hint: 'No such command: try /help' };
    const options = command.options ?? [];
    const usageHint = usage(command);
    const flag = /(?:^|\s)--([A-Za-z][\w-]*)?$/.exec(before);
    if (flag) {
      const typed = (flag[1] ?? '').toLowerCase();
      const items = options
        .flatMap((o) => [
          ...[o.name, ...(o.aliases ?? [])]
            .filter((n) => n.startsWith(typed))
            .slice(0, 1)
            .map((n) => [n, o]),
          // Flags that set the option without a value (`--fast` for mode draft).
          ...Object.keys(o.presets ?? {})
            .filter((n) => n.startsWith(typed))
            .map((n) => [n, o]),
        ])
        .map(([name, o]) => ({
          label: `--${name}`,
          detail: o.description,
          insert: `${name} `,
          replace: typed.length,
        }));
      return { items, hint: usageHint };
    }
    const value = /(?:^|\s)--([A-Za-z][\w-]*)[ =]([^\s-][^-]*|)$/.exec(before);
    if (value) {
      const name = value[1].toLowerCase().replace(/-/g, '_');
      const option = options.find((o) => o.name === name || o.aliases?.includes(name));
      if (!option) return { hint: `Unknown option --${value[1]}. ${usageHint}` };
      const partial = value[2];
      const hint = `--${value[1]}: ${option.description}`;
      if (option.choices) {
        const items = option.choices
          .filter(
            (c) =>
              String(c.value).toLowerCase().startsWith(partial.toLowerCase()) ||
              c.name.toLowerCase().includes(partial.toLowerCase()),
          )
          .map((c) => ({
            label: String(c.value),
            detail: c.name === String(c.value) ? '' : c.name,
            insert: `${c.value} `,
            replace: partial.length,
          }));
        return { items, hint };
      }
      if (option.autocomplete)
        return { remote: { command: command.name, option: option.name, partial }, hint };
      return { hint };
    }
    return { hint: usageHint };
  }

  show(items) {
    const { list } = this.options;
    this.items = items.slice(0, 12);
    this.active = this.items.length ? 0 : -1;
    this.picked = false;
    list.replaceChildren(
      ...this.items.map((item, i) => {
        const option = document.createElement('div');
        option.id = `suggestion-${i}`;
        option.setAttribute('role', 'option');
        const label = document.createElement('span');
        label.className = 'suggestion-label';
        label.textContent = item.label;
        const detail = document.createElement('span');
        detail.className = 'suggestion-detail';
        detail.textContent = item.detail;
        option.append(label, detail);
        option.addEventListener('mousedown', (event) => {
          event.preventDefault();
          this.accept(item);
        });
        return option;
      }),
    );
    list.hidden = this.items.length === 0;
    this.setActive(this.active);
  }

  setActive(index) {
    const { list, input } = this.options;
    this.active = index;
    for (const [i, node] of [...list.children].entries())
      node.setAttribute('aria-selected', String(i === index));
    if (index >= 0) input.setAttribute('aria-activedescendant', `suggestion-${index}`);
    else input.removeAttribute('aria-activedescendant');
  }

  accept(item) {
    const { input } = this.options;
    const caret = input.selectionStart;
    const head = input.value.slice(0, caret - item.replace) + item.insert;
    input.value = head + input.value.slice(caret).replace(/^ /, '');
    input.setSelectionRange(head.length, head.length);
    input.focus();
    this.refresh();
  }

  close() {
    this.show([]);
  }

  showHint(text) {
    this.options.hint.textContent = text;
  }
}

function usage(command) {
  const options = command.options ?? [];
  const positional = options.find((o) => o.required && (o.type === 'string' || o.type === 'channel'));
  const flags = options
    .filter((o) => o !== positional)
    .flatMap((o) => [
      `--${o.aliases?.[0] ?? o.name}${o.type === 'boolean' ? '' : ` <${o.name}>`}`,
      ...Object.keys(o.presets ?? {}).map((flag) => `--${flag}`),
    ]);
  return `/${command.name}${positional ? ` <${positional.name}>` : ''}${flags.length ? ` [${flags.join('] [')}]` : ''} — ${command.description}`;
}

function loadHistory() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? '[]');
    return Array.isArray(stored) ? stored.filter((s) => typeof s === 'string') : [];
  } catch {
    return [];
  }
}
