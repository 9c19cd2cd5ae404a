// Every string the user sees, in English and Russian (strings/), chosen by the browser's
// language. Error codes of the node (docs/PROTOCOL.md, Errors) have their own texts; a code
// without one shows the node's message.
import { en, type Strings } from './strings/en';
import { ru } from './strings/ru';

export type Lang = 'en' | 'ru';

export const lang: Lang = (navigator.languages?.[0] ?? navigator.language ?? 'en').toLowerCase().startsWith('ru')
  ? 'ru'
  : 'en';

export const t: Strings = lang === 'ru' ? ru : en;

// The text for a code another region chose: ours, or none of its words (a hostile region
// must not write a notice of its choosing).
export function knownErrorText(code: string): string {
  return Object.prototype.hasOwnProperty.call(t.errors, code) ? t.errors[code] : t.unknownReason;
}

// The text for an error: ours for a known code, else the node's own message.
export function errorText(code: string, message: string, retryAfter?: number): string {
  // An own property only: a code from a hostile region such as "constructor" is not ours.
  const base = (Object.prototype.hasOwnProperty.call(t.errors, code) ? t.errors[code] : undefined) ?? (message || code);
  return retryAfter ? `${base} ${t.tryAgainIn(retryAfter)}` : base;
}
