import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import * as chat from '../chat';
import { formatWhen, isolate } from '../format';
import { errorText, t } from '../i18n';
import { GroupAddsControl } from './GroupAddsControl';
import { PushControl } from './PushControl';

// The user's devices (docs/PROTOCOL.md, GET /v1/sessions): each with when it logged in,
// and a button that logs it out. Logging out this device is the ordinary log out.
export function Devices({ onClose }: { onClose: () => void }) {
  const [devices, setDevices] = useState<api.Device[] | null>(null);
  const [error, setError] = useState('');

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

  async function end(d: api.Device) {
    if (d.current) return void chat.logout();
    try {
      await api.endDevice(d.device_id);
    } catch (e) {
      const err = api.toApiError(e);
      setError(errorText(err.code, err.message, err.retry_after));
    }
    await load();
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
    </section>
  );
}
