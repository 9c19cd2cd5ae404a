// A component drawn again only when one of its props changed (compared by reference).
// Preact's own `memo` lives in preact/compat, whose import hooks every element of the app
// (React's event and attribute names); this is the part of it the app needs. The
// component's own subscriptions (useStore) still draw it when what they select changes.
import { Component, createElement, type ComponentType, type FunctionComponent } from 'preact';

export function memo<P extends object>(inner: FunctionComponent<P>): ComponentType<P> {
  return class Memo extends Component<P> {
    override shouldComponentUpdate(next: P): boolean {
      const before = this.props as Record<string, unknown>;
      const after = next as Record<string, unknown>;
      for (const k in after) if (before[k] !== after[k]) return true;
      for (const k in before) if (!(k in after)) return true;
      return false;
    }

    override render() {
      return createElement(inner, this.props);
    }
  };
}
