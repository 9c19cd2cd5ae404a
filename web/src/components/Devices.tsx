import { useEffect, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import * as chat from '../chat';
import { formatWhen, isolate } from '../format';
import { errorText, t } from '../i18n';
import { ChangePassword } from './ChangePassword';
import { GroupAddsControl } from './GroupAddsControl';
import { PushControl } from './PushControl';

// The user's devices (docs/PROTOCOL.md, GET /v1/sessions): each with when it logged in,
// and a button that logs it out. Logging out this device is the ordinary log out. Below
// them: logging out every other device at once (DELETE /v1/sessions/others, asked again
// here in the page first), and changing the password (ChangePassword).
export function Devices({ onClose }: { onClose: () => void }) {
  const [devices, setDevices] = useState<api.Device[] | null>(null);
  const [error, setError] = useState('');
  // Log out all other devices: asked in the page (no window.confirm), then the list again.
  const [confirming, setConfirming] = useState(false);
  const [ending, setEnding] = useState(false);
  const [ended, setEnded] = useState<number | null>(null); // how many the last one ended
  const [othersError, setOthersError] = useState('');
  const endOthersButton = useRef<HTMLButtonElement>(null);
  const cancelButton = useRef<HTMLButtonElement>(null);
  const wasConfirming = useRef(false);

  async function load() {
    try {
      setDevices((await api.devices()).sessions);
      setError('');
    } catch (e) {
      const err = api.toApiError(e);
      setError(errorText(err.code, err.message, err.retry_after));
    }
  }

  useEffect(() => {
    void load();
  }, []);

  // Focus goes to the question's Cancel when it is asked, and back to the button after.
  useEffect(() => {
    if (confirming) cancelButton.current?.focus();
    else if (wasConfirming.current) endOthersButton.current?.focus();
    wasConfirming.current = confirming;
  }, [confirming]);

  async function endOthers() {
    if (ending) return;
    setEnding(true);
    setOthersError('');
    let count: number | null = null;
    try {
      count = Number((await api.endOtherDevices()).ended) || 0;
    } catch (e) {
      const err = api.toApiError(e);
      setOthersError(errorText(err.code, err.message, err.retry_after));
    }
    await load(); // the count is shown with the list it left
    setEnded(count);
    setEnding(false);
    setConfirming(false);
  }

  async function end(d: api.Device) {
    if (d.current) return void chat.logout();
    let failed = '';
    try {
      await api.endDevice(d.device_id);
    } catch (e) {
      const err = api.toApiError(e);
      failed = errorText(err.code, err.message, err.retry_after);
    }
    await load();
    if (failed) setError(failed); // (after the list's reload, which clears its own)
  }

  return (
    <section class="devices" aria-labelledby="devices-title" data-testid="devices-panel">
      <header class="devices__head">
        <h2 id="devices-title" class="devices__title">{t.devicesTitle}</h2>
        <button class="button button--ghost button--small" type="button" data-testid="devices-close" onClick={onClose}>
          {t.close}
        </button>
      </header>
      {error && <p class="field__error" role="alert">{error}</p>}
      <PushControl />
      <GroupAddsControl />
      <ul class="devices__list">
        {(devices ?? []).map((d) => (
          <li class="devices__item" key={d.device_id} data-testid="device" data-device-id={d.device_id} data-current={d.current ? 'true' : 'false'}>
            <span class="devices__name">
              {/* A badge before the name, never text after it: a device may be named "… · this device". */}
              {d.current && (
                <span class="badge devices__current" data-testid="device-current">
                  {t.thisDevice}
                </span>
              )}
              <bdi>{d.device_name}</bdi>
            </span>
            <span class="devices__since">{t.deviceSince(formatWhen(Date.parse(d.created_at)))}</span>
            <button
              class="button button--ghost button--small"
              type="button"
              data-testid="device-end"
              aria-label={d.current ? t.endDevice : t.endDeviceNamed(isolate(d.device_name))}
              onClick={() => void end(d)}
            >
              {t.logout}
            </button>
          </li>
        ))}
      </ul>
      <div class="devices__push">
        {confirming ? (
          <div class="devices__confirm" role="group" aria-labelledby="end-others-question" data-testid="devices-end-others-question">
            <p id="end-others-question" class="devices__note">
              {t.endOthersQuestion}
            </p>
            <span class="devices__actions">
              <button
                class="button button--danger button--small"
                type="button"
                data-testid="devices-end-others-confirm"
                disabled={ending}
                onClick={() => void endOthers()}
              >
                {ending ? t.working : t.endOthersConfirm}
              </button>
              <button
                ref={cancelButton}
                class="button button--ghost button--small"
                type="button"
                data-testid="devices-end-others-cancel"
                disabled={ending}
                onClick={() => setConfirming(false)}
              >
                {t.cancel}
              </button>
            </span>
          </div>
        ) : (
          <button
            ref={endOthersButton}
            class="button button--ghost button--small"
            type="button"
            data-testid="devices-end-others"
            onClick={() => {
              setEnded(null);
              setOthersError('');
              setConfirming(true);
            }}
          >
            {t.endOthers}
          </button>
        )}
        {ended !== null && (
          <p class="devices__note" role="status" data-testid="devices-end-others-done" data-ended={String(ended)}>
            {t.endedOthers(ended)}
          </p>
        )}
        {othersError && (
          <p class="field__error" role="alert" data-testid="devices-end-others-error">
            {othersError}
          </p>
        )}
      </div>
      <ChangePassword onChanged={() => void load()} />
    </section>
  );
}
