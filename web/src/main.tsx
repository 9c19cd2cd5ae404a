import { render } from 'preact';
import { App } from './components/App';
import { lang } from './i18n';

document.documentElement.lang = lang;
const root = document.getElementById('app');
if (root) render(<App />, root);
