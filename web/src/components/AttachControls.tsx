// The composer's side of files: the attach button (a real button opening a hidden file
// input), the upload's progress or error, and dropping files onto the conversation.
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../i18n';
import { useStore } from '../store';
import * as uploads from '../upload';

export function AttachButton({ id }: { id: string }) {
  const input = useRef<HTMLInputElement>(null);
  const busy = useStore((s) => Boolean(s.uploads[id] && !s.uploads[id]!.error));
  return (
    <>
      <input
        ref={input}
        type="file"
        multiple
        hidden
        tabIndex={-1}
        aria-hidden="true"
        data-testid="attach-input"
        onChange={(e) => {
          const files = [...(e.currentTarget.files ?? [])];
          e.currentTarget.value = ''; // the same file again is a new pick
          uploads.attach(id, files);
        }}
      />
      <button
        class="icon-button"
        type="button"
        aria-label={t.attach}
        title={t.attach}
        data-testid="attach-button"
        disabled={busy}
        onClick={() => input.current?.click()}
      >
        <svg class="icon" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">
          <path
            d="M16.5 6.5 8.6 14.4a2 2 0 0 0 2.8 2.8l8-8a4 4 0 0 0-5.6-5.6l-8 8a6 6 0 0 0 8.5 8.5l6.4-6.4"
            fill="none"
            stroke="currentColor"
            stroke-width="2"
            stroke-linecap="round"
          />
        </svg>
      </button>
    </>
  );
}

export function UploadStatus({ id }: { id: string }) {
  const upload = useStore((s) => s.uploads[id]);
  if (!upload) return null;
  if (upload.error) {
    return (
      <div class="upload upload--error" role="alert" data-testid="upload-error">
        <span class="upload__text">{upload.error}</span>
        <button class="button button--small" type="button" data-testid="upload-dismiss" onClick={() => uploads.dismiss(id)}>
          {t.close}
        </button>
      </div>
    );
  }
  const label = t.uploadingFiles(upload.names);
  return (
    <div class="upload" data-testid="upload-status">
      <span class="upload__text" id={`upload-label-${id}`}>
        {label}
      </span>
      <progress
        class="upload__bar"
        max={upload.total}
        value={upload.loaded}
        aria-labelledby={`upload-label-${id}`}
        data-testid="upload-progress"
      />
      <button class="button button--small" type="button" data-testid="upload-cancel" onClick={() => uploads.cancel(id)}>
        {t.cancelUpload}
      </button>
    </div>
  );
}

const hasFiles = (e: DragEvent): boolean => Boolean(e.dataTransfer?.types.includes('Files'));

// Drop handlers for the conversation's element, and whether files are being dragged over it.
// While it is shown, a file dropped anywhere else on the page is not opened by the browser.
export function useFileDrop(id: string, enabled: boolean) {
  const [over, setOver] = useState(false);
  const depth = useRef(0);
  useEffect(() => {
    const stop = (e: DragEvent) => hasFiles(e) && e.preventDefault();
    window.addEventListener('dragover', stop);
    window.addEventListener('drop', stop);
    return () => {
      window.removeEventListener('dragover', stop);
      window.removeEventListener('drop', stop);
    };
  }, []);
  useEffect(() => {
    depth.current = 0;
    setOver(false);
  }, [id]);
  const handlers = {
    onDragEnter: (e: DragEvent) => {
      if (!enabled || !hasFiles(e)) return;
      depth.current++;
      setOver(true);
    },
    onDragOver: (e: DragEvent) => {
      if (!enabled || !hasFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    },
    onDragLeave: () => {
      if (depth.current > 0 && --depth.current === 0) setOver(false);
    },
    onDrop: (e: DragEvent) => {
      depth.current = 0;
      setOver(false);
      if (!enabled || !hasFiles(e)) return;
      e.preventDefault();
      uploads.attach(id, [...(e.dataTransfer?.files ?? [])]);
    },
  };
  return { over, handlers };
}
