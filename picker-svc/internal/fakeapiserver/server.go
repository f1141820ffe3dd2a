// Package fakeapiserver is a Kubernetes API server for tests that speaks
// real HTTP, so that client-go's reflectors, backoff and watch handling run
// as they do against a cluster: list, watch (from a resource version, or
// streaming the initial list with its end bookmark), discovery, get and
// status updates, for pods and any custom resource. It also does what a
// cluster's API server does on a bad day, on demand: drop every watch,
// answer 410 Gone to an expired resource version, go away (connection
// refused) and come back at the same address. client-go's fake clientset
// cannot do these: it has no HTTP.
package fakeapiserver

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Resource is a served resource.
type Resource struct {
	GVR  schema.GroupVersionResource
	Kind string // e.g. Pod, InferencePool
}

// Pods is the core pods resource.
var Pods = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod"}

func (r Resource) key() string { return r.GVR.Group + "/" + r.GVR.Version + "/" + r.GVR.Resource }

func (r Resource) apiVersion() string { return r.GVR.GroupVersion().String() }

// maxHistory bounds the events kept for watches that resume.
const maxHistory = 50000

// event is one change, kept for watches that resume from a resource version.
type event struct {
	typ  string // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
	res  string // Resource.key
	ns   string
	rv   int64
	body []byte // the whole watch event, JSON
}

// Server is one fake API server. Its methods are safe for concurrent use.
type Server struct {
	addr string

	mu       sync.Mutex
	srv      *http.Server // nil: down
	served   map[string]Resource
	objs     map[string]map[string]map[string]any // resource key -> namespace/name -> object
	rv       int64
	history  []event
	expired  int64 // watches from a resource version below this get 410 Gone
	watchers map[*watcher]bool
	requests map[string]int // "VERB resource" -> count
}

// New returns a server, up, serving the given resources (and pods).
func New(resources ...Resource) (*Server, error) {
	s, err := NewDown(resources...)
	if err != nil {
		return nil, err
	}
	return s, s.Up()
}

// NewDown returns a server that has an address but does not listen yet:
// connections to it are refused until Up.
func NewDown(resources ...Resource) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return nil, err
	}
	s := &Server{addr: addr, served: map[string]Resource{Pods.key(): Pods}, objs: map[string]map[string]map[string]any{},
		watchers: map[*watcher]bool{}, requests: map[string]int{}}
	for _, r := range resources {
		s.served[r.key()] = r
	}
	return s, nil
}

// URL is the server's address, http://127.0.0.1:port.
func (s *Server) URL() string { return "http://" + s.addr }

// Kubeconfig writes a kubeconfig for the server into dir and returns its path.
func (s *Server) Kubeconfig(dir string) (string, error) {
	p := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, s.URL())
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// Up starts listening at the server's address (again).
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP)}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(s.srv)
	return nil
}

// Down closes the listener and every connection: clients get connection
// refused until Up.
func (s *Server) Down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.dropLocked()
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Close stops the server for good.
func (s *Server) Close() { s.Down() }

// DropWatches ends every open watch, as an API server restart or a load
// balancer's idle timeout does.
func (s *Server) DropWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked()
}

func (s *Server) dropLocked() {
	for w := range s.watchers {
		delete(s.watchers, w)
		close(w.ch)
	}
}

// Expire makes every resource version known so far too old: a watch
// resuming from one gets 410 Gone (as after etcd compaction), and the
// client has to list again.
func (s *Server) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = s.rv + 1
	s.history = nil
}

// Requests counts the requests of a verb (list, watch, get, update) on a
// resource (e.g. "pods") so far.
func (s *Server) Requests(verb, resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[verb+" "+resource]
}

// Apply creates or replaces objects (each with metadata.name and
// metadata.namespace) of one resource in one go, each one event. The
// objects are the server's from then on: the caller must not change them.
func (s *Server) Apply(r Resource, objs ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range objs {
		s.putLocked(r, o)
	}
}

// Delete removes objects by namespace/name.
func (s *Server) Delete(r Resource, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		o := s.objs[r.key()][k]
		if o == nil {
			continue
		}
		delete(s.objs[r.key()], k)
		s.rv++
		o = clone(o)
		setRV(o, s.rv)
		s.emitLocked(r, "DELETED", nsOf(o), o)
	}
}

// Get returns a copy of an object (nil if there is none).
func (s *Server) Get(r Resource, key string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objs[r.key()][key]; o != nil {
		return clone(o)
	}
	return nil
}

// putLocked stores o with a new resource version and tells the watchers.
func (s *Server) putLocked(r Resource, o map[string]any) map[string]any {
	o = clone(o)
	o["apiVersion"], o["kind"] = r.apiVersion(), r.Kind
	key := nsOf(o) + "/" + nameOf(o)
	byKey := s.objs[r.key()]
	if byKey == nil {
		byKey = map[string]map[string]any{}
		s.objs[r.key()] = byKey
	}
	typ := "MODIFIED"
	if byKey[key] == nil {
		typ = "ADDED"
	}
	s.rv++
	setRV(o, s.rv)
	byKey[key] = o
	s.emitLocked(r, typ, nsOf(o), o)
	return o
}

func (s *Server) emitLocked(r Resource, typ, ns string, o map[string]any) {
	e := event{typ: typ, res: r.key(), ns: ns, rv: s.rv, body: watchEvent(typ, o)}
	s.history = append(s.history, e)
	if len(s.history) > maxHistory {
		// Compaction: the oldest half goes, and with it the resource
		// versions a watch could resume from.
		s.history = append([]event(nil), s.history[len(s.history)/2:]...)
		s.expired = s.history[0].rv
	}
	for w := range s.watchers {
		if w.res != e.res || w.ns != ns {
			continue
		}
		select {
		case w.ch <- e:
		default:
			// A watcher that cannot keep up is dropped, as the API server
			// drops one; its client lists again.
			delete(s.watchers, w)
			close(w.ch)
		}
	}
}

// listLocked returns the objects of r in ns, by name.
func (s *Server) listLocked(r Resource, ns string) []map[string]any {
	var out []map[string]any
	for _, o := range s.objs[r.key()] {
		if nsOf(o) == ns {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return nameOf(out[i]) < nameOf(out[j]) })
	return out
}

func meta(o map[string]any) map[string]any {
	m, _ := o["metadata"].(map[string]any)
	if m == nil {
		m = map[string]any{}
		o["metadata"] = m
	}
	return m
}

func nsOf(o map[string]any) string   { s, _ := meta(o)["namespace"].(string); return s }
func nameOf(o map[string]any) string { s, _ := meta(o)["name"].(string); return s }
func setRV(o map[string]any, rv int64) {
	meta(o)["resourceVersion"] = strconv.FormatInt(rv, 10)
}
