package discovery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
)

// watched is one resource kept current by a client-go Reflector: its
// objects in an indexer (what listers read), each change reported by key,
// its list and watch outcomes reported to Health. A Reflector of our own
// rather than a shared informer because only the Reflector takes a retry
// backoff: the informers' fixed one (0.8 s doubling to 30 s, jittered up to
// 60 s, reset only after 2 quiet minutes) kept a picker 20-60 s behind an
// API server that had come back.
type watched struct {
	name   string
	store  *notifyingStore
	refl   *cache.Reflector
	health *Health
	// handle applies one object (nil: deleted) of a custom resource.
	handle func(ns, name string, u *unstructured.Unstructured)
}

// newWatched builds the reflector for lw (whose client says whether it can
// stream the initial list). changed learns every added, updated or deleted
// key; synced runs after each full list is in the store (both on the
// reflector's goroutine: they must be quick).
func newWatched(name string, lw *cache.ListWatch, client any, example runtime.Object, resync time.Duration, backoff wait.Backoff,
	h *Health, changed func(key string), synced func(n int)) *watched {
	tracked := &trackedLW{lw: lw, noWatchList: watchlist.DoesClientNotSupportWatchListSemantics(client), name: name, health: h}
	store := &notifyingStore{Indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}), changed: changed, synced: synced}
	r := cache.NewReflectorWithOptions(tracked, example, store, cache.ReflectorOptions{Name: name, ResyncPeriod: resync, Backoff: &backoff})
	return &watched{name: name, store: store, refl: r, health: h}
}

// run lists and watches until ctx ends.
func (w *watched) run(ctx context.Context) { w.refl.RunWithContext(ctx) }

// notifyingStore is the reflector's store: an indexer that reports what
// changed. A relist reports only the objects whose resource version moved
// or that went away, so catching up after an outage costs what changed.
type notifyingStore struct {
	cache.Indexer
	changed   func(key string)
	synced    func(n int)
	hasSynced atomic.Bool
}

func (s *notifyingStore) report(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		s.changed(key)
	}
}

// Add implements cache.ReflectorStore.
func (s *notifyingStore) Add(obj any) error {
	if err := s.Indexer.Add(obj); err != nil {
		return err
	}
	s.report(obj)
	return nil
}

// Update implements cache.ReflectorStore.
func (s *notifyingStore) Update(obj any) error {
	if err := s.Indexer.Update(obj); err != nil {
		return err
	}
	s.report(obj)
	return nil
}

// Delete implements cache.ReflectorStore.
func (s *notifyingStore) Delete(obj any) error {
	if err := s.Indexer.Delete(obj); err != nil {
		return err
	}
	s.report(obj)
	return nil
}

// Replace implements cache.ReflectorStore: the result of a full list.
func (s *notifyingStore) Replace(list []any, rv string) error {
	before := map[string]string{}
	for _, o := range s.Indexer.List() {
		if key, err := cache.MetaNamespaceKeyFunc(o); err == nil {
			before[key] = resourceVersion(o)
		}
	}
	if err := s.Indexer.Replace(list, rv); err != nil {
		return err
	}
	for _, o := range list {
		key, err := cache.MetaNamespaceKeyFunc(o)
		if err != nil {
			continue
		}
		if old, ok := before[key]; !ok || old != resourceVersion(o) {
			s.changed(key)
		}
		delete(before, key)
	}
	for key := range before {
		s.changed(key)
	}
	s.hasSynced.Store(true)
	s.synced(len(list))
	return nil
}

// Resync implements cache.ReflectorStore: every object again.
func (s *notifyingStore) Resync() error {
	for _, key := range s.Indexer.ListKeys() {
		s.changed(key)
	}
	return nil
}

func resourceVersion(o any) string {
	if m, err := apimeta.Accessor(o); err == nil {
		return m.GetResourceVersion()
	}
	return ""
}

// trackedLW reports each list and watch outcome to Health.
type trackedLW struct {
	lw          *cache.ListWatch
	noWatchList bool
	name        string
	health      *Health
}

// IsWatchListSemanticsUnSupported tells the reflector whether the client
// can stream the initial list (client-go's fake clientsets cannot).
func (t *trackedLW) IsWatchListSemanticsUnSupported() bool { return t.noWatchList }

// ListWithContext implements cache.ListerWatcherWithContext.
func (t *trackedLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	o, err := t.lw.ListWithContext(ctx, opts)
	if err != nil && ctx.Err() == nil {
		t.failed(err)
	}
	return o, err
}

// List implements cache.ListerWatcher (the reflector calls the
// WithContext methods).
func (t *trackedLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return t.ListWithContext(context.Background(), opts)
}

// Watch implements cache.ListerWatcher.
func (t *trackedLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return t.WatchWithContext(context.Background(), opts)
}

// WatchWithContext implements cache.ListerWatcherWithContext.
func (t *trackedLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := t.lw.WatchWithContext(ctx, opts)
	if err != nil {
		if ctx.Err() == nil {
			t.failed(err)
		}
		return nil, err
	}
	if opts.SendInitialEvents == nil || !*opts.SendInitialEvents {
		// Resuming from a known version: current from here. (A streamed
		// initial list is current once applied: Health.Listed.)
		t.health.Current(t.name)
	}
	return newTrackedWatch(w, t), nil
}

// failed reports err, except an expired resource version: the reflector
// lists again, as routine as a watch timing out.
func (t *trackedLW) failed(err error) {
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		t.health.Interrupted(t.name)
		return
	}
	t.health.Failed(t.name, err)
}

// trackedWatch passes a watch's events on, reporting error events and the
// end of the stream.
type trackedWatch struct {
	inner watch.Interface
	t     *trackedLW
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newTrackedWatch(inner watch.Interface, t *trackedLW) *trackedWatch {
	w := &trackedWatch{inner: inner, t: t, out: make(chan watch.Event), stop: make(chan struct{})}
	go w.pass()
	return w
}

func (w *trackedWatch) pass() {
	defer close(w.out)
	in := w.inner.ResultChan()
	for {
		select {
		case e, ok := <-in:
			if !ok {
				select {
				case <-w.stop: // the reflector stopped it
				default:
					w.t.health.Interrupted(w.t.name)
				}
				return
			}
			if e.Type == watch.Error {
				w.t.failed(apierrors.FromObject(e.Object))
			}
			select {
			case w.out <- e:
			case <-w.stop:
				return
			}
		case <-w.stop:
			return
		}
	}
}

// Stop implements watch.Interface.
func (w *trackedWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.inner.Stop()
	})
}

// ResultChan implements watch.Interface.
func (w *trackedWatch) ResultChan() <-chan watch.Event { return w.out }

// debugHandler logs every record at debug level: client-go's own lines.
type debugHandler struct{ slog.Handler }

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.Handler.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.Handler.Handle(ctx, r)
}

func (d debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{d.Handler.WithAttrs(as)}
}

func (d debugHandler) WithGroup(name string) slog.Handler {
	return debugHandler{d.Handler.WithGroup(name)}
}
