// Every string the user sees, in English and Russian, chosen by the browser's language.
// Error codes of the node (docs/PROTOCOL.md, Errors) have their own texts; a code without
// one shows the node's message.

export type Lang = 'en' | 'ru';

export const lang: Lang = (navigator.languages?.[0] ?? navigator.language ?? 'en').toLowerCase().startsWith('ru')
  ? 'ru'
  : 'en';

const en = {
  appName: 'petchat',
  login: 'Log in',
  register: 'Create account',
  haveAccount: 'I have an account',
  noAccount: 'New here? Create an account',
  username: 'User name',
  usernameHint: '3–32 characters: a–z, 0–9, . _ -, starting with a letter',
  password: 'Password',
  displayName: 'Display name (optional)',
  registrationToken: 'Invitation code (if the server needs one)',
  registered: 'Account created. Logging in…',
  working: 'Please wait…',
  logout: 'Log out',
  devices: 'Devices',
  devicesTitle: 'Your devices',
  thisDevice: 'this device',
  endDevice: 'Log out this device',
  endDeviceNamed: (name: string) => `Log out ${name}`,
  deviceSince: (when: string) => `logged in ${when}`,
  close: 'Close',
  loggedOutRevoked: 'This device was logged out. Please log in again.',
  conversations: 'Chats',
  noConversations: 'No chats yet. Start one below.',
  newChatLabel: 'New chat with (name@region)',
  newChatPlaceholder: 'bob@eu-west',
  startChat: 'Start chat',
  invalidUserId: 'That is not a user id (name or name@region).',
  newGroup: 'New group',
  groupTitle: 'Group title',
  groupMembers: 'Members (name@region, separated by commas or spaces)',
  createGroup: 'Create group',
  cancel: 'Cancel',
  notAdded: (who: string, why: string) => `Not added: ${who} (${why})`,
  online: 'online',
  lastSeen: (when: string) => `last seen ${when}`,
  typing: 'typing…',
  typingNamed: (who: string) => `${who} is typing…`,
  you: 'You',
  noMessages: 'No messages yet. Say hello!',
  loadingOlder: 'Loading older messages…',
  composerLabel: 'Message',
  composerPlaceholder: 'Write a message…',
  send: 'Send',
  back: 'Back to chats',
  groupInfo: 'Group members',
  closePanel: 'Close',
  members: (n: number) => `${n} ${n === 1 ? 'member' : 'members'}`,
  unread: (n: number) => `${n} unread`,
  addMember: 'Add member',
  add: 'Add',
  remove: 'Remove',
  removeMember: (who: string) => `Remove ${who}`,
  leave: 'Leave group',
  successor: 'New owner',
  leftGroup: 'You are no longer a member of this group.',
  role: { owner: 'owner', admin: 'admin', member: 'member' } as Record<string, string>,
  selectChat: 'Choose a chat, or start a new one.',
  connecting: 'Connecting…',
  stateSending: 'Sending',
  stateSent: 'Sent',
  stateDelivered: 'Delivered',
  stateRead: 'Read',
  stateReadBy: (n: number) => `Read by ${n}`,
  stateFailed: 'Not sent',
  undeliverable: 'Cannot be delivered',
  retry: 'Retry',
  newMessageFrom: (who: string, text: string) => `New message from ${who}: ${text}`,
  attachment: 'file',
  attach: 'Attach files',
  dropFiles: 'Drop files here to send them',
  uploadingFiles: (names: string) => `Uploading ${names}`,
  cancelUpload: 'Cancel upload',
  uploadFailed: (names: string, why: string) => `Could not send ${names}: ${why}`,
  emptyFile: (name: string) => `${name} is empty.`,
  downloadFile: 'Download',
  downloadFailed: 'Could not download the file.',
  imageUnavailable: 'The picture cannot be shown.',
  sizeUnits: ['B', 'KB', 'MB', 'GB'],
  today: 'Today',
  yesterday: 'Yesterday',
  tryAgainIn: (s: number) => `Try again in ${s} s.`,
  errors: {
    network: 'The server cannot be reached. Check your connection.',
    invalid_credentials: 'Wrong user name or password.',
    invalid_name: 'User names are 3–32 characters: a–z, 0–9, . _ -, starting with a letter.',
    weak_password: 'The password is too short.',
    name_taken: 'That user name is taken.',
    registration_closed: 'This server does not accept new accounts.',
    invalid_registration_token: 'The invitation code is missing or wrong.',
    rate_limited: 'Too many attempts.',
    user_disabled: 'This account is disabled.',
    user_not_found: 'No such user.',
    forbidden_role: 'Your role in this group does not allow that.',
    owner_must_hand_over: 'Choose a new owner before leaving.',
    too_many_groups: 'You are in too many groups.',
    group_full: 'The group is full.',
    already_member: 'already a member',
    body_too_large: 'The message is too long.',
    not_a_member: 'You are not a member of this conversation.',
    store_unavailable: 'The server cannot store messages right now. Try again later.',
    shutting_down: 'The server is restarting. Try again in a moment.',
    timeout: 'No answer from the server.',
  } as Record<string, string>,
};

type Strings = typeof en;

const ru: Strings = {
  appName: 'petchat',
  login: 'Войти',
  register: 'Создать аккаунт',
  haveAccount: 'У меня есть аккаунт',
  noAccount: 'Впервые здесь? Создайте аккаунт',
  username: 'Имя пользователя',
  usernameHint: '3–32 символа: a–z, 0–9, . _ -, начиная с буквы',
  password: 'Пароль',
  displayName: 'Отображаемое имя (необязательно)',
  registrationToken: 'Код приглашения (если сервер требует)',
  registered: 'Аккаунт создан. Входим…',
  working: 'Подождите…',
  logout: 'Выйти',
  devices: 'Устройства',
  devicesTitle: 'Ваши устройства',
  thisDevice: 'это устройство',
  endDevice: 'Выйти на этом устройстве',
  endDeviceNamed: (name: string) => `Завершить сеанс: ${name}`,
  deviceSince: (when: string) => `вход ${when}`,
  close: 'Закрыть',
  loggedOutRevoked: 'Это устройство вышло из аккаунта. Войдите снова.',
  conversations: 'Чаты',
  noConversations: 'Чатов пока нет. Начните новый ниже.',
  newChatLabel: 'Новый чат с (имя@регион)',
  newChatPlaceholder: 'bob@eu-west',
  startChat: 'Начать чат',
  invalidUserId: 'Это не идентификатор пользователя (имя или имя@регион).',
  newGroup: 'Новая группа',
  groupTitle: 'Название группы',
  groupMembers: 'Участники (имя@регион через запятую или пробел)',
  createGroup: 'Создать группу',
  cancel: 'Отмена',
  notAdded: (who, why) => `Не добавлен: ${who} (${why})`,
  online: 'в сети',
  lastSeen: (when) => `был(а) ${when}`,
  typing: 'печатает…',
  typingNamed: (who) => `${who} печатает…`,
  you: 'Вы',
  noMessages: 'Сообщений пока нет. Поздоровайтесь!',
  loadingOlder: 'Загрузка старых сообщений…',
  composerLabel: 'Сообщение',
  composerPlaceholder: 'Напишите сообщение…',
  send: 'Отправить',
  back: 'Назад к чатам',
  groupInfo: 'Участники группы',
  closePanel: 'Закрыть',
  members: (n) => `${n} ${plural(n, 'участник', 'участника', 'участников')}`,
  unread: (n) => `${n} ${plural(n, 'непрочитанное', 'непрочитанных', 'непрочитанных')}`,
  addMember: 'Добавить участника',
  add: 'Добавить',
  remove: 'Удалить',
  removeMember: (who) => `Удалить ${who}`,
  leave: 'Покинуть группу',
  successor: 'Новый владелец',
  leftGroup: 'Вы больше не участник этой группы.',
  role: { owner: 'владелец', admin: 'админ', member: 'участник' },
  selectChat: 'Выберите чат или начните новый.',
  connecting: 'Подключение…',
  stateSending: 'Отправляется',
  stateSent: 'Отправлено',
  stateDelivered: 'Доставлено',
  stateRead: 'Прочитано',
  stateReadBy: (n) => `Прочитали: ${n}`,
  stateFailed: 'Не отправлено',
  undeliverable: 'Не может быть доставлено',
  retry: 'Повторить',
  newMessageFrom: (who, text) => `Новое сообщение от ${who}: ${text}`,
  attachment: 'файл',
  attach: 'Прикрепить файлы',
  dropFiles: 'Перетащите файлы сюда, чтобы отправить',
  uploadingFiles: (names) => `Загрузка: ${names}`,
  cancelUpload: 'Отменить загрузку',
  uploadFailed: (names, why) => `Не удалось отправить ${names}: ${why}`,
  emptyFile: (name) => `Файл ${name} пуст.`,
  downloadFile: 'Скачать',
  downloadFailed: 'Не удалось скачать файл.',
  imageUnavailable: 'Не удаётся показать изображение.',
  sizeUnits: ['Б', 'КБ', 'МБ', 'ГБ'],
  today: 'Сегодня',
  yesterday: 'Вчера',
  tryAgainIn: (s) => `Повторите через ${s} с.`,
  errors: {
    network: 'Сервер недоступен. Проверьте подключение.',
    invalid_credentials: 'Неверное имя пользователя или пароль.',
    invalid_name: 'Имя: 3–32 символа a–z, 0–9, . _ -, начиная с буквы.',
    weak_password: 'Слишком короткий пароль.',
    name_taken: 'Это имя уже занято.',
    registration_closed: 'Этот сервер не принимает новых пользователей.',
    invalid_registration_token: 'Код приглашения не указан или неверен.',
    rate_limited: 'Слишком много попыток.',
    user_disabled: 'Этот аккаунт отключён.',
    user_not_found: 'Нет такого пользователя.',
    forbidden_role: 'Ваша роль в группе этого не позволяет.',
    owner_must_hand_over: 'Перед выходом выберите нового владельца.',
    too_many_groups: 'Вы состоите в слишком многих группах.',
    group_full: 'Группа заполнена.',
    already_member: 'уже участник',
    body_too_large: 'Сообщение слишком длинное.',
    not_a_member: 'Вы не участник этой беседы.',
    store_unavailable: 'Сервер сейчас не может сохранять сообщения. Повторите позже.',
    shutting_down: 'Сервер перезапускается. Повторите через минуту.',
    timeout: 'Сервер не ответил.',
  },
};

function plural(n: number, one: string, few: string, many: string): string {
  const rule = new Intl.PluralRules('ru').select(n);
  return rule === 'one' ? one : rule === 'few' ? few : many;
}

export const t: Strings = lang === 'ru' ? ru : en;

// The text for an error: ours for a known code, else the node's own message.
export function errorText(code: string, message: string, retryAfter?: number): string {
  const base = t.errors[code] ?? (message || code);
  return retryAfter ? `${base} ${t.tryAgainIn(retryAfter)}` : base;
}

const timeFormat = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'long', year: 'numeric' });
const shortFormat = new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'short' });

export const formatTime = (ms: number): string => timeFormat.format(ms);

export function formatDay(ms: number): string {
  const day = new Date(ms).toDateString();
  const now = new Date();
  if (day === now.toDateString()) return t.today;
  if (day === new Date(now.getTime() - 86_400_000).toDateString()) return t.yesterday;
  return dayFormat.format(ms);
}

// For the chat list: the time today, else the date.
export function formatWhen(ms: number): string {
  return new Date(ms).toDateString() === new Date().toDateString() ? timeFormat.format(ms) : shortFormat.format(ms);
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
