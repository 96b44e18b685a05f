/**
 * The gallery panel: the channel's recent results (from the database, through the bot), newest
 * first, as thumbnails that open full size.
 */

export class Gallery {
  /**
   * @param {{ panel: HTMLElement, list: HTMLElement, title: HTMLElement, empty: HTMLElement, onOpen: Function }} options
   */
  constructor(options) {
    this.options = options;
    this.channelId = 'general';
    this.pending = undefined;
    this.loadSeq = 0;
  }

  get open() {
    return !this.options.panel.hidden;
  }

  setChannel(channelId) {
    this.channelId = channelId;
    this.options.title.textContent = `Gallery · #${channelId}`;
    if (this.open) this.load();
  }

  /** A new result arrived: reload soon, once, however many arrive together. */
  changed() {
    if (!this.open || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.load();
    }, 500);
  }

  async load() {
    const seq = ++this.loadSeq;
    const { list, empty } = this.options;
    list.setAttribute('aria-busy', 'true');
    try {
      const response = await fetch(`/api/gallery?channel=${encodeURIComponent(this.channelId)}&limit=48`);
      if (!response.ok) throw new Error(`gallery: ${response.status}`);
      const { items } = await response.json();
      if (seq !== this.loadSeq) return;
      list.replaceChildren(...items.map((item) => this.tile(item)));
      empty.hidden = items.length > 0;
      empty.textContent = 'No results in this channel yet. Type /imagine and a prompt to make the first.';
    } catch {
      if (seq !== this.loadSeq) return;
      empty.hidden = false;
      empty.textContent = 'The gallery could not be loaded; it will try again with the next result.';
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  tile(item) {
    const li = document.createElement('li');
    li.className = 'gallery-item';
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'gallery-open';
    const img = document.createElement('img');
    img.src = item.thumbUrl;
    img.alt = item.prompt;
    img.loading = 'lazy';
    img.decoding = 'async';
    const caption = document.createElement('span');
    caption.className = 'gallery-caption';
    const prompt = document.createElement('span');
    prompt.className = 'gallery-prompt';
    prompt.textContent = item.prompt;
    const meta = document.createElement('span');
    meta.className = 'gallery-meta';
    const author = item.author.displayName;
    meta.textContent = `${author} · seed ${item.seed}`;
    caption.append(prompt, meta);
    button.append(img, caption);
    button.setAttribute('aria-label', `${item.prompt}, by ${author}, seed ${item.seed}`);
    button.addEventListener('click', () =>
      this.options.onOpen(item.gridUrl, item.prompt, `${item.prompt} — ${author} · seed ${item.seed}`),
    );
    li.append(button);
    return li;
  }
}
