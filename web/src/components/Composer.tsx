import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import * as chat from '../chat';
import { t } from '../i18n';
import { getState, setState } from '../store';
import { AttachButton, UploadStatus } from './AttachControls';

const MAX_ROWS = 6;

// Enter sends, Shift+Enter starts a new line (and Enter while an IME composes is the IME's).
export function Composer({ id }: { id: string }) {
  // What is typed outlives this composer: kept per conversation in the store, so it is
  // still there after another chat was looked at, and after a new chat's first message
  // turned it into a conversation (which mounts a new composer) while more was typed.
  const [text, setLocalText] = useState(() => getState().composing[id] ?? '');
  const setText = (value: string) => {
    setLocalText(value);
    setState((s) => ({ composing: { ...s.composing, [id]: value } }));
  };
  const input = useRef<HTMLTextAreaElement>(null);

  // A conversation that opens (or a new chat that becomes a conversation on its first
  // `accepted`, which mounts a new composer) takes the focus when nothing else holds it,
  // so typing goes on; not on touch screens, where focusing would pop up the keyboard.
  // A layout effect: it runs in the commit that removed the old composer, so no keystroke
  // (and no look at the page) falls between the two with the focus on the page's body.
  useLayoutEffect(() => {
    const idle = !document.activeElement || document.activeElement === document.body;
    if (idle && window.matchMedia('(pointer: fine)').matches) input.current?.focus();
  }, [id]);

  function submit(e?: Event) {
    e?.preventDefault();
    const body = text.trim();
    if (!body) return;
    chat.send(id, body);
    setText('');
    input.current?.focus();
  }

  function onKeyDown(e: KeyboardEvent) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      submit();
    }
  }

  // Grows with its lines (rows, not a style attribute: the CSP allows no inline styles).
  const rows = Math.min(MAX_ROWS, Math.max(1, text.split('\n').length));
  return (
    <>
      <UploadStatus id={id} />
      <form class="composer" onSubmit={submit}>
        <AttachButton id={id} />
        <label class="visually-hidden" for="composer-input">
          {t.composerLabel}
        </label>
        <textarea
          id="composer-input"
          ref={input}
          class="composer__input"
          data-testid="composer-input"
          rows={rows}
          placeholder={t.composerPlaceholder}
          value={text}
          onInput={(e) => {
            const value = e.currentTarget.value;
            setText(value);
            chat.typing(id, value.trim().length > 0);
          }}
          onKeyDown={onKeyDown}
          onBlur={() => chat.typing(id, false)}
          autoFocus
        />
        <button class="icon-button icon-button--primary" type="submit" aria-label={t.send} data-testid="send-button" disabled={!text.trim()}>
          <span aria-hidden="true">➤</span>
        </button>
      </form>
    </>
  );
}
