// Dates, sizes, lists and clipped text for people, in the page's language (i18n.ts).
import { lang, t } from './i18n';

const timeFormat = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'long', year: 'numeric' });
const shortFormat = new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'short' });
const listFormat = new Intl.ListFormat(lang, { style: 'long', type: 'conjunction' });

// A time a Date can hold (±8.64e15 ms); others (a bogus sent_at_ms) are shown as no time.
export const validTime = (ms: number): boolean => Number.isFinite(ms) && Math.abs(ms) <= 8.64e15;

export const formatTime = (ms: number): string => (validTime(ms) ? timeFormat.format(ms) : '');

// For a <time datetime>: the ISO form, or '' for a time a Date cannot hold.
export const isoTime = (ms: number): string => (validTime(ms) ? new Date(ms).toISOString() : '');

export function formatDay(ms: number): string {
  if (!validTime(ms)) return '';
  const day = new Date(ms).toDateString();
  const now = new Date();
  if (day === now.toDateString()) return t.today;
  if (day === new Date(now.getTime() - 86_400_000).toDateString()) return t.yesterday;
  return dayFormat.format(ms);
}

// For the chat list: the time today, else the date.
export function formatWhen(ms: number): string {
  if (!validTime(ms)) return '';
  return new Date(ms).toDateString() === new Date().toDateString() ? timeFormat.format(ms) : shortFormat.format(ms);
}

// For a moment something happened: the time today, else the short date and the time.
export function formatMoment(ms: number): string {
  if (!validTime(ms)) return '';
  const time = timeFormat.format(ms);
  return new Date(ms).toDateString() === new Date().toDateString() ? time : t.dayAndTime(shortFormat.format(ms), time);
}

// A name someone chose (a group's title, a device's or a file's name) set apart from the
// sentence around it: first strong isolate … pop directional isolate, the plain-text form of
// <bdi>, so that right-to-left letters or marks in it cannot reorder the words of the notice.
export const isolate = (name: string): string => `\u2068${name}\u2069`;

// "a, b and c" in the page's language.
export const formatList = (items: string[]): string => listFormat.format(items);

// At most `max` characters (whole code points), with an ellipsis when cut.
export function clip(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : t.clipped(chars.slice(0, max).join('').trimEnd());
}

// A file size for people: 512 B, 1.5 KB, 20 MB (units of 1024).
export function formatSize(bytes: number): string {
  let n = bytes;
  let unit = 0;
  while (n >= 1024 && unit < t.sizeUnits.length - 1) {
    n /= 1024;
    unit++;
  }
  const digits = unit === 0 || n >= 10 ? 0 : 1;
  return `${new Intl.NumberFormat(lang, { maximumFractionDigits: digits }).format(n)} ${t.sizeUnits[unit]}`;
}
