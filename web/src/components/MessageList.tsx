import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import * as chat from '../chat';
import { formatDay, validTime } from '../format';
import { t } from '../i18n';
import * as retention from '../retention';
import { emptyThread, useStore, type ChatMessage, type Thread } from '../store';
import { MessageItem } from './MessageItem';

const NEAR_EDGE_PX = 120;
const EMPTY = emptyThread();

// The day of each message, worked out once per message object, not at every drawing of the
// list (which a new message causes).
const days = new WeakMap<ChatMessage, string>();
function dayOf(m: ChatMessage, previous: string): string {
  let d = days.get(m);
  if (d === undefined) {
    // A time a Date cannot hold gets no separator of its own ('' is the day before it).
    d = validTime(m.sentAtMs) ? new Date(m.sentAtMs).toDateString() : '';
    days.set(m, d);
  }
  return d || previous;
}

// Messages oldest first, with a separator per day. Scrolling near the top loads older
// history; the view keeps its place while it is prepended (or while the oldest messages are
// trimmed: retention.ts, which trims only the newest, below the view, while it is scrolled
// up). Reaching the end of a thread whose newest were left out loads the page after it. A
// new message draws only its own row: the others are memoized on their message objects.
export function MessageList({ id }: { id: string }) {
  const thread: Thread = useStore((s) => s.threads[id]) ?? EMPTY;
  const kind = useStore((s) => s.conversations[id]?.kind);
  const me = useStore((s) => s.userId);
  const scroller = useRef<HTMLDivElement>(null);
  // Measured before each update: how far from the bottom the view was, and the ends shown.
  const fromBottom = useRef(0);
  const atBottom = useRef(true);
  const ends = useRef({ first: '', last: '', more: false });
  // Here, while the DOM still shows the last update: the place is taken as it is now, not
  // as the last scroll event saw it. That event comes only with the next frame, so an
  // update in between (a message, a read mark, the list fetched again) would otherwise
  // take a view just scrolled up for one still at the bottom and pull it back down, and
  // the scroll that was to load older messages would be undone.
  measure();

  const messages = thread.messages;
  const first = messages[0]?.key ?? '';
  const last = messages[messages.length - 1];

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const prepended = ends.current.first !== '' && first !== ends.current.first && (last?.key ?? '') === ends.current.last;
    const ownNew = last && last.key !== ends.current.last && last.from === me;
    // A page after the newest held (the thread left newer ones out: no live message is
    // added then): the view stays where it is, and the page's messages come on screen as
    // the user scrolls on, each read in its turn.
    const pagedOn = ends.current.more && (last?.key ?? '') !== ends.current.last;
    if (prepended) el.scrollTop = el.scrollHeight - fromBottom.current;
    else if (!pagedOn && (atBottom.current || ownNew)) el.scrollTop = el.scrollHeight;
    ends.current = { first, last: last?.key ?? '', more: thread.hasMoreAfter };
    measure();
  });

  // Not only on scrolling: a short history that does not fill the view cannot be scrolled
  // up, and a view that is still at the top when a load ends (or a failed load's wait is
  // over) gets no new scroll event (setting scrollTop to where it is fires none).
  useEffect(loadAtEdges, [thread, id]);

  function measure() {
    const el = scroller.current;
    if (!el) return;
    fromBottom.current = el.scrollHeight - el.scrollTop;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_EDGE_PX;
    retention.setScrolledUp(id, !atBottom.current);
  }

  // At the end of a thread that left its newest out: the page after it. Else near the top (a
  // view too short to scroll is at 0) with more to load: the next older page.
  function loadAtEdges() {
    const el = scroller.current;
    if (!el || thread.loading) return;
    if (thread.hasMoreAfter && atBottom.current) chat.showNewer(id);
    else if (el.scrollTop < NEAR_EDGE_PX && thread.hasMoreBefore) void chat.loadHistory(id, true);
  }

  function onScroll() {
    measure();
    loadAtEdges();
  }

  const items = [];
  let day = '';
  for (const m of messages) {
    const d = dayOf(m, day);
    if (d !== day) {
      day = d;
      items.push(
        <li key={`day:${d}:${m.key}`} class="day-separator" role="separator">
          <span>{formatDay(m.sentAtMs)}</span>
        </li>,
      );
    }
    items.push(<MessageItem key={m.key} message={m} own={m.from === me} group={kind === 'group'} />);
  }

  return (
    <div class="messages" ref={scroller} onScroll={onScroll} tabIndex={0} aria-label={t.messagesLabel} data-testid="message-list">
      {thread.loading && (
        <p class="messages__loading" role="status">
          {t.loadingOlder}
        </p>
      )}
      {thread.loaded && messages.length === 0 && <p class="messages__empty">{t.noMessages}</p>}
      <ol class="messages__list">{items}</ol>
    </div>
  );
}
