/**
 * A form the bot asks one person to fill in (remix: the prompt before a reroll or variation), as a
 * modal <dialog>: the fields prefilled, Enter submits (Shift+Enter for a new line), Escape or
 * Cancel closes it without sending anything.
 */

export class FormDialog {
  /**
   * @param {{ dialog: HTMLDialogElement, form: HTMLFormElement, title: HTMLElement,
   *   fields: HTMLElement, submit: HTMLButtonElement, cancel: HTMLButtonElement,
   *   onSubmit: (frame: object, values: Record<string, string>) => boolean }} options
   */
  constructor(options) {
    this.options = options;
    this.frame = undefined;
    options.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#send();
    });
    options.cancel.addEventListener('click', () => this.close());
    options.dialog.addEventListener('close', () => {
      this.frame = undefined;
    });
  }

  /** Shows the form of a `form` frame (replacing one still open). */
  open(frame) {
    const { dialog, title, fields, submit } = this.options;
    this.frame = frame;
    title.textContent = frame.form.title;
    submit.textContent = frame.form.submitLabel;
    fields.replaceChildren(...frame.form.fields.map((field) => this.#field(field)));
    if (!dialog.open) dialog.showModal();
    const first = fields.querySelector('textarea, input');
    if (first) {
      first.focus();
      first.setSelectionRange(first.value.length, first.value.length);
    }
  }

  close() {
    if (this.options.dialog.open) this.options.dialog.close();
  }

  #field(field) {
    const wrapper = document.createElement('div');
    wrapper.className = 'form-field';
    const id = `form-field-${field.id}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = field.label;
    const input = document.createElement(field.multiline ? 'textarea' : 'input');
    input.id = id;
    input.name = field.id;
    input.value = field.value ?? '';
    input.required = field.required === true;
    if (field.maxLength) input.maxLength = field.maxLength;
    if (field.placeholder) input.placeholder = field.placeholder;
    if (field.multiline) {
      input.rows = 4;
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.options.form.requestSubmit();
        }
      });
    }
    wrapper.append(label, input);
    return wrapper;
  }

  #send() {
    const frame = this.frame;
    if (!frame) return;
    const values = {};
    for (const field of frame.form.fields) {
      values[field.id] = this.options.fields.querySelector(`[name="${CSS.escape(field.id)}"]`)?.value ?? '';
    }
    if (this.options.onSubmit(frame, values)) this.close();
  }
}
