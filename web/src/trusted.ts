// Trusted Types: the page's Content-Security-Policy makes every script sink take a trusted
// value (`require-trusted-types-for 'script'`), and allows one policy, `petchat`. Markup
// assigned as a string (innerHTML and the like) throws; the client never does it. The one
// script URL it hands the browser is its service worker's, made here.
export const SERVICE_WORKER = '/sw.js';

interface ScriptUrlPolicy {
  createScriptURL(url: string): unknown;
}
interface PolicyFactory {
  createPolicy(name: string, rules: { createScriptURL(url: string): string }): ScriptUrlPolicy;
}

let policy: ScriptUrlPolicy | undefined;

// The service worker's URL as the browser's register() takes it: a TrustedScriptURL where
// the browser has Trusted Types, else the plain string.
export function serviceWorkerUrl(): string {
  const factory = (globalThis as { trustedTypes?: PolicyFactory }).trustedTypes;
  if (!factory) return SERVICE_WORKER;
  policy ??= factory.createPolicy('petchat', {
    createScriptURL(url: string): string {
      if (url !== SERVICE_WORKER) throw new TypeError(`no script from ${url}`);
      return url;
    },
  });
  return policy.createScriptURL(SERVICE_WORKER) as string;
}
