/**
 * A small typed event emitter for the hooks the composition root attaches metrics to.
 *
 * Not node:events: an `error` event without a listener throws there, and a listener that
 * throws would unwind into whatever emitted, which here is a watch callback (client-node
 * swallows or, in its informer, turns such exceptions into unhandled rejections). Every
 * listener call is isolated; a failing listener is reported to `onListenerError` once per
 * listener and otherwise ignored.
 */
export type Listener<T> = (event: T) => void;

export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Listener<never>[]>();
  readonly #failed = new WeakSet<Listener<never>>();
  onListenerError: ((name: string, err: unknown) => void) | undefined;

  on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    const list = this.#listeners.get(name) ?? [];
    list.push(fn as Listener<never>);
    this.#listeners.set(name, list);
    return () => {
      const l = this.#listeners.get(name);
      if (l !== undefined) this.#listeners.set(name, l.filter((x) => x !== (fn as Listener<never>)));
    };
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const list = this.#listeners.get(name);
    if (list === undefined) return;
    for (const fn of list) {
      try {
        (fn as Listener<Events[K]>)(event);
      } catch (err) {
        if (!this.#failed.has(fn)) {
          this.#failed.add(fn);
          try {
            this.onListenerError?.(String(name), err);
          } catch {
            // nothing more can be done
          }
        }
      }
    }
  }
}
