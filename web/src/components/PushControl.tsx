import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n';
import * as push from '../push';

// Turns push notifications on or off for this device (Devices panel). Failures (permission
// denied, the browser's push service unreachable, the node refusing) show below the button.
export function PushControl() {
  const [on, setOn] = useState<boolean | null>(null); // null: not known yet
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  useEffect(() => {
    let live = true;
    push.enabled().then(
      (v) => live && setOn(v),
      () => live && setOn(false),
    );
    return () => {
      live = false;
    };
  }, []);

  async function run(action: () => Promise<void>) {
    if (busy) return;
    setBusy(true);
    setError('');
    try {
      await action();
    } catch (e) {
      setError(push.errorMessage(e));
    }
    setOn(await push.enabled().catch(() => false));
    setBusy(false);
  }

  if (!push.supported()) return <p class="devices__push devices__note">{t.pushUnsupported}</p>;
  return (
    <div class="devices__push">
      {on ? (
        <button class="button button--ghost button--small" type="button" data-testid="push-disable" disabled={busy} onClick={() => void run(push.disable)}>
          {busy ? t.working : t.pushDisable}
        </button>
      ) : (
        <button
          class="button button--primary button--small"
          type="button"
          data-testid="push-enable"
          disabled={busy || on === null}
          onClick={() => void run(push.enable)}
        >
          {busy ? t.working : t.pushEnable}
        </button>
      )}
      {error && (
        <p class="field__error" role="alert" data-testid="push-error">
          {error}
        </p>
      )}
    </div>
  );
}
