import { t } from '../i18n';

// What tells a group from a direct chat wherever its title is shown. Anyone may make a group,
// name it "alice@test" (or "@alice", or after any contact) and add people to it: its title
// alone must never pass for the person. An icon of people, named "Group" for screen
// readers, beside the title and never in it (a title is only ever the group's own text).
export function GroupMark({ class: cls }: { class: string }) {
  return (
    <span class={cls} role="img" aria-label={t.group} data-testid="group-marker">
      <svg viewBox="0 0 24 24" width="1em" height="1em" aria-hidden="true" focusable="false">
        <circle cx="9" cy="8" r="3.5" fill="currentColor" />
        <path d="M2 20c0-4 3.1-6.5 7-6.5s7 2.5 7 6.5z" fill="currentColor" />
        <circle cx="17" cy="9" r="2.5" fill="currentColor" />
        <path d="M17.5 20c0-2.6-.9-4.7-2.6-6 3.6-.4 7.1 1.6 7.1 6z" fill="currentColor" />
      </svg>
    </span>
  );
}
