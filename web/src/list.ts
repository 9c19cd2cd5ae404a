// The conversation list (PROTOCOL.md, GET /v1/conversations): loaded at start and again when
// events ask for it (a new conversation, a change), its answers reconciled with what live
// events and the user changed while they were on their way.
import * as api from './api';
import { notice } from './history';
import { idOrder } from './ids';
import { nodeNow } from './nodeClock';
import * as retention from './retention';
import { getState, setState, subscribe, type Conversation, type State } from './store';
import { fromSummary, withoutContent } from './thread';
import { isNewer } from './threadOrder';
import { withoutAsked } from './unread';

let listTimer = 0;

// Called with the open conversation after a list load (chat.ts: reads.ts, its badge and read).
let afterLoad: (id: string) => void = () => {};
export function setAfterListLoad(fn: (id: string) => void): void {
  afterLoad = fn;
}

// The session ended: nothing scheduled is loaded.
export function stopList(): void {
  clearTimeout(listTimer);
  listFirstAsked = 0;
  listAgain = false;
  listNotice = NO_NOTICE;
}

// The list is fetched again once the requests for it have stopped for LIST_QUIET_MS (a burst
// of events makes one load), and at the latest LIST_MAX_WAIT_MS after the first of them: a
// steady stream of events (a busy group's changes) would otherwise put it off for as long as
// the stream lasts, and what only the list tells (a group one was added to) would not show.
const LIST_QUIET_MS = 400;
const LIST_MAX_WAIT_MS = 2000;
let listFirstAsked = 0; // when the first request the next load answers came; 0: none waits

export function scheduleList(): void {
  const now = Date.now();
  if (!listFirstAsked) listFirstAsked = now;
  const wait = Math.min(LIST_QUIET_MS, listFirstAsked + LIST_MAX_WAIT_MS - now);
  clearTimeout(listTimer);
  listTimer = window.setTimeout(() => {
    listFirstAsked = 0;
    reloadList();
  }, Math.max(0, wait));
}

// One scheduled list load at a time (a load may take up to 50 pages): one asked meanwhile
// runs once after it.
let listLoading = false;
let listAgain = false;
function reloadList(): void {
  if (listLoading) {
    listAgain = true;
    return;
  }
  listLoading = true;
  void loadConversations().finally(() => {
    listLoading = false;
    if (!listAgain) return; // (stopList: the session ended)
    listAgain = false;
    reloadList();
  });
}

// List loads by when they were asked: an answer asked before the one shown is older than it.
let listsAsked = 0;
let listShown = 0;

// The notice a failed list load showed, and which load that was: a load asked after it that
// works takes it away, and only such a load (one asked before it is older than the failure;
// a notice shown since, a refusal's say, stays until the user opens a conversation). The
// failure of a load asked before one that worked shows nothing: the list is newer than it.
const NO_NOTICE = { text: '', load: 0 };
let listNotice = NO_NOTICE;
// Another notice took its place (or the user's opening of a conversation took it away): it
// is no longer the list's to take away.
subscribe(() => {
  if (listNotice.text && getState().notice !== listNotice.text) listNotice = NO_NOTICE;
});

export async function loadConversations(): Promise<void> {
  const { userId: asked, conversations: then } = getState();
  const number = ++listsAsked;
  try {
    // Every page: one ends early at about 1 MiB of summaries (large last messages), so the
    // first may hold few of the user's conversations. At most 50 pages of 200.
    const summaries: api.ConversationSummary[] = [];
    let before: string | undefined;
    for (let pages = 0; pages < 50; pages++) {
      const page = await api.conversations(before, 200);
      // An answer for whoever was logged in when it was asked, not for who is now.
      if (getState().userId !== asked) return;
      summaries.push(...page.conversations);
      if (!page.next) break;
      before = page.next;
    }
    if (number < listShown) return;
    listShown = number;
    setState((s) => {
      const conversations: Record<string, Conversation> = {};
      for (const summary of summaries) {
        const c = fromSummary(summary);
        conversations[c.id] = fromAnswer(c, s.conversations[c.id], then[c.id]);
      }
      // Drafts, and conversations beyond the pages read, stay.
      for (const [id, c] of Object.entries(s.conversations)) conversations[id] ??= c;
      const ours = listNotice.text !== '' && s.notice === listNotice.text && number > listNotice.load;
      return { conversations, readsAsked: confirmedReads(s.readsAsked, conversations), ...(ours ? { notice: '' } : {}) };
    });
    // The open conversation's badge counts what is not on screen (the answer counts from
    // the node's read mark).
    const active = getState().activeId;
    if (active) afterLoad(active);
  } catch (err) {
    if (getState().userId !== asked) return; // the session it was asked for ended
    // A load asked later worked (the list shown is newer), or failed (its notice stays).
    if (number < listShown || number < listNotice.load) return;
    notice(err);
    listNotice = { text: getState().notice, load: number };
  }
}

// The reads of the user's that the node holds, by the marks of a list answer, are confirmed.
function confirmedReads(asked: State['readsAsked'], conversations: State['conversations']): State['readsAsked'] {
  let next = asked;
  for (const [id, read] of Object.entries(asked)) {
    const mark = conversations[id]?.readMark;
    if (mark && idOrder(mark) >= read.order) next = withoutAsked(next, id);
  }
  return next;
}

// A conversation `c` of a list answer, with what the page holds of it now (`now`) and held
// when the list was asked (`then`; undefined: not known then). The answer is older than what
// live events and the user changed since it was asked, which stays: of the parts with an
// order (the last message, the read mark) the newer is kept, of the others what the page
// changed meanwhile. A last message that went since (deleted, expired) keeps its place
// without its content, as the live event left it.
export function fromAnswer(c: Conversation, now: Conversation | undefined, then: Conversation | undefined): Conversation {
  if (c.lastMessage && retention.isGone(c.lastMessage, nodeNow())) c.lastMessage = withoutContent(c.lastMessage);
  if (!now) return c;
  // (A preview of a message that went since yields to the answer's older one that is there.)
  const goneBefore = now.lastMessage?.gone && c.lastMessage && !c.lastMessage.gone;
  if (now.lastMessage && isNewer(now.lastMessage, c.lastMessage) && !goneBefore) {
    c.lastMessage = now.lastMessage;
    c.lastActivityMs = Math.max(c.lastActivityMs, now.lastActivityMs);
  }
  // A read this page sent may have reached the node after the list was read there.
  const markNewer = now.readMark !== null && (c.readMark === null || idOrder(now.readMark) > idOrder(c.readMark));
  if (markNewer) c.readMark = now.readMark;
  if (!then) {
    // Known only from live events: the answer knows its title and flags, and its count is
    // the answer's or the one of what came live, whichever is more.
    c.unread = markNewer ? now.unread : Math.max(c.unread, now.unread);
    return c;
  }
  if (markNewer || now.unread !== then.unread || now.readMark !== then.readMark) c.unread = now.unread;
  if (now.title !== then.title) c.title = now.title;
  if (now.member !== then.member) c.member = now.member;
  if (now.muted !== then.muted) c.muted = now.muted;
  return c;
}
