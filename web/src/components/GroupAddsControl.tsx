import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import { errorText, t } from '../i18n';

// Who may add the user to groups (docs/PROTOCOL.md, "Who may add me to groups"): a checkbox
// in the Devices panel, read from and written to the node (the setting is the account's).
export function GroupAddsControl() {
  const [value, setValue] = useState<api.GroupAdds | null>(null); // null: not known yet
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  useEffect(() => {
    let live = true;
    api.me().then(
      (p) => live && setValue(p.group_adds === 'contacts' ? 'contacts' : 'everyone'),
      (e) => {
        const err = api.toApiError(e);
        if (live) setError(errorText(err.code, err.message, err.retry_after));
      },
    );
    return () => {
      live = false;
    };
  }, []);

  async function change(contactsOnly: boolean) {
    if (busy) return;
    const before = value;
    setBusy(true);
    setError('');
    setValue(contactsOnly ? 'contacts' : 'everyone'); // shown at once; put back if refused
    try {
      const p = await api.setGroupAdds(contactsOnly ? 'contacts' : 'everyone');
      setValue(p.group_adds === 'contacts' ? 'contacts' : 'everyone');
    } catch (e) {
      setValue(before);
      const err = api.toApiError(e);
      setError(errorText(err.code, err.message, err.retry_after));
    }
    setBusy(false);
  }

  return (
    <div class="devices__push">
      <label class="devices__note">
        <input
          type="checkbox"
          data-testid="group-adds-contacts"
          checked={value === 'contacts'}
          disabled={busy || value === null}
          onChange={(e) => void change(e.currentTarget.checked)}
        />{' '}
        {t.groupAddsContacts}
      </label>
      {error && (
        <p class="field__error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
