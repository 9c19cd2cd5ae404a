import { useMemo } from 'preact/hooks';
import * as chat from '../chat';
import { formatList, formatWhen } from '../format';
import { t } from '../i18n';
import { sortedConversations, useStore, type Conversation } from '../store';
import { preview } from '../thread';
import { shownUnread } from '../unread';
import { GroupMark } from './GroupMark';

export function ConversationList() {
  const conversations = useStore((s) => s.conversations);
  const activeId = useStore((s) => s.activeId);
  const list = useMemo(() => sortedConversations(conversations), [conversations]);
  if (list.length === 0) return <p class="conv-list__empty">{t.noConversations}</p>;
  return (
    <nav aria-label={t.conversations}>
      <ul class="conv-list">
        {list.map((c) => (
          <li key={c.id}>
            <ConversationItem conv={c} active={c.id === activeId} />
          </li>
        ))}
      </ul>
    </nav>
  );
}

function ConversationItem({ conv, active }: { conv: Conversation; active: boolean }) {
  const me = useStore((s) => s.userId);
  const presence = useStore((s) => (conv.peer ? s.presence[conv.peer] : undefined));
  const typing = useStore((s) => s.typing[conv.id]);
  // The node's count, or the one after a read of the user's that the node has not confirmed.
  const unread = useStore((s) => shownUnread(s, conv.id));
  const typists = Object.keys(typing ?? {});
  const last = conv.lastMessage;
  const text = preview(last, t.attachment);
  return (
    <button
      type="button"
      class={active ? 'conv-item conv-item--active' : 'conv-item'}
      data-testid="conv-item"
      data-conv-id={conv.id}
      aria-current={active ? 'true' : undefined}
      onClick={() => chat.open(conv.id)}
    >
      {conv.kind === 'group' ? (
        // Never a letter of its title: a group titled after someone would wear their avatar.
        <GroupMark class="avatar avatar--group" />
      ) : (
        <span class="avatar" aria-hidden="true">
          {(conv.title[0] ?? '?').toUpperCase()}
          {presence?.online && <span class="avatar__dot" data-testid="presence-dot" />}
        </span>
      )}
      <span class="conv-item__body">
        <span class="conv-item__top">
          <span class="conv-item__title" data-testid="conv-title">{conv.title}</span>
          {last && <span class="conv-item__time">{formatWhen(last.sentAtMs)}</span>}
        </span>
        <span class="conv-item__bottom">
          {typists.length > 0 ? (
            <span class="conv-item__typing" data-testid="typing-indicator">
              {conv.kind === 'group' ? t.typingNamed(formatList(typists)) : t.typing}
            </span>
          ) : (
            <span class="conv-item__preview">
              {last && last.from === me ? t.previewFrom(t.you) : last && conv.kind === 'group' ? t.previewFrom(last.from) : ''}
              {text}
            </span>
          )}
          {unread > 0 && (
            <span class={conv.muted ? 'badge badge--muted' : 'badge'} data-testid="unread-badge">
              <span aria-hidden="true">{unread}</span>
              <span class="visually-hidden">{t.unread(unread)}</span>
            </span>
          )}
        </span>
        {presence?.online && <span class="visually-hidden">{t.presenceSuffix(t.online)}</span>}
        {conv.muted && (
          <span class="conv-item__muted" data-testid="muted-mark">
            {t.mutedLabel}
          </span>
        )}
      </span>
    </button>
  );
}
