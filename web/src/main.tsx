import { render } from 'preact';
import { App } from './components/App';
import { lang } from './i18n';
import { listen as listenForPush } from './push';

document.documentElement.lang = lang;
listenForPush();
const root = document.getElementById('app');
if (root) render(<App />, root);
