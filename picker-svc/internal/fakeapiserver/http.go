package fakeapiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// watcher is one open watch.
type watcher struct {
	res, ns string
	ch      chan event // closed when the server drops the watch
}

// route is what a request path names.
type route struct {
	res       Resource
	ns, name  string
	status    bool // the status subresource
	discovery string
}

// parse reads /api/v1[/namespaces/NS/RES[/NAME[/status]]] and
// /apis/G/V[/namespaces/NS/RES[/NAME[/status]]].
func (s *Server) parse(path string) (route, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var group, version string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return route{}, false
	}
	if len(parts) == 0 {
		return route{discovery: group + "/" + version}, true
	}
	if len(parts) < 3 || parts[0] != "namespaces" || len(parts) > 5 || (len(parts) == 5 && parts[4] != "status") {
		return route{}, false
	}
	r, ok := s.served[group+"/"+version+"/"+parts[2]]
	if !ok {
		return route{}, false
	}
	rt := route{res: r, ns: parts[1]}
	if len(parts) >= 4 {
		rt.name = parts[3]
	}
	rt.status = len(parts) == 5
	return rt, true
}

func (s *Server) serveHTTP(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	rt, ok := s.parse(req.URL.Path)
	s.mu.Unlock()
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	if rt.discovery != "" {
		s.discover(w, rt.discovery)
		return
	}
	q := req.URL.Query()
	switch {
	case req.Method == http.MethodGet && rt.name == "" && (q.Get("watch") == "true" || q.Get("watch") == "1"):
		s.watch(w, req, rt)
	case req.Method == http.MethodGet && rt.name == "":
		s.list(w, rt)
	case req.Method == http.MethodGet:
		s.get(w, rt)
	case req.Method == http.MethodPut && rt.status:
		s.updateStatus(w, req, rt)
	default:
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", req.Method+" is not served here")
	}
}

func (s *Server) count(verb string, r Resource) {
	s.mu.Lock()
	s.requests[verb+" "+r.GVR.Resource]++
	s.mu.Unlock()
}

func (s *Server) discover(w http.ResponseWriter, gv string) {
	s.mu.Lock()
	var rs []map[string]any
	for _, r := range s.served {
		if r.GVR.Group+"/"+r.GVR.Version == gv {
			rs = append(rs, map[string]any{"name": r.GVR.Resource, "namespaced": true, "kind": r.Kind,
				"verbs": []string{"get", "list", "watch"}})
		}
	}
	s.mu.Unlock()
	if len(rs) == 0 {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "APIResourceList", "apiVersion": "v1",
		"groupVersion": strings.TrimPrefix(gv, "/"), "resources": rs})
}

func (s *Server) list(w http.ResponseWriter, rt route) {
	s.count("list", rt.res)
	s.mu.Lock()
	items := s.listLocked(rt.res, rt.ns)
	body, err := json.Marshal(map[string]any{"kind": rt.res.Kind + "List", "apiVersion": rt.res.apiVersion(),
		"metadata": map[string]any{"resourceVersion": strconv.FormatInt(s.rv, 10)}, "items": items})
	s.mu.Unlock()
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) get(w http.ResponseWriter, rt route) {
	s.count("get", rt.res)
	o := s.Get(rt.res, rt.ns+"/"+rt.name)
	if o == nil {
		writeStatus(w, http.StatusNotFound, "NotFound", rt.res.GVR.Resource+" "+strconv.Quote(rt.name)+" not found")
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// updateStatus replaces an object's status, refusing a stale resource
// version with 409 Conflict as the API server does.
func (s *Server) updateStatus(w http.ResponseWriter, req *http.Request, rt route) {
	s.count("update", rt.res)
	var in map[string]any
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	s.mu.Lock()
	cur := s.objs[rt.res.key()][rt.ns+"/"+rt.name]
	switch {
	case cur == nil:
		s.mu.Unlock()
		writeStatus(w, http.StatusNotFound, "NotFound", rt.name+" not found")
		return
	case meta(in)["resourceVersion"] != nil && meta(in)["resourceVersion"] != meta(cur)["resourceVersion"]:
		s.mu.Unlock()
		writeStatus(w, http.StatusConflict, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
		return
	}
	next := clone(cur)
	next["status"] = in["status"]
	out := s.putLocked(rt.res, next)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// watch serves a watch: the initial list as ADDED events then a bookmark
// when asked to (sendInitialEvents), or everything after the resource
// version given, or 410 Gone for an expired one; then changes as they come,
// until the client goes or the server drops the watch.
func (s *Server) watch(w http.ResponseWriter, req *http.Request, rt route) {
	s.count("watch", rt.res)
	q := req.URL.Query()
	from := q.Get("resourceVersion")
	initial := q.Get("sendInitialEvents") == "true"
	var backlog [][]byte
	s.mu.Lock()
	if rv, err := strconv.ParseInt(from, 10, 64); err == nil && rv > 0 && rv < s.expired {
		s.mu.Unlock()
		if initial {
			writeStatus(w, http.StatusGone, "Expired", fmt.Sprintf("too old resource version: %d (%d)", rv, s.expired))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(watchEvent("ERROR", statusObject(http.StatusGone, "Expired", fmt.Sprintf("too old resource version: %d", rv))))
		return
	}
	if initial || from == "" || from == "0" {
		for _, o := range s.listLocked(rt.res, rt.ns) {
			backlog = append(backlog, watchEvent("ADDED", o))
		}
		if initial {
			bm := map[string]any{"apiVersion": rt.res.apiVersion(), "kind": rt.res.Kind, "metadata": map[string]any{
				"resourceVersion": strconv.FormatInt(s.rv, 10), "annotations": map[string]any{"k8s.io/initial-events-end": "true"}}}
			backlog = append(backlog, watchEvent("BOOKMARK", bm))
		}
	} else {
		rv, _ := strconv.ParseInt(from, 10, 64)
		for _, e := range s.history {
			if e.rv > rv && e.res == rt.res.key() && e.ns == rt.ns {
				backlog = append(backlog, e.body)
			}
		}
	}
	wt := &watcher{res: rt.res.key(), ns: rt.ns, ch: make(chan event, 8192)}
	s.watchers[wt] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.watchers[wt] {
			delete(s.watchers, wt)
			close(wt.ch)
		}
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	for _, b := range backlog {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
	if fl != nil {
		fl.Flush()
	}
	for {
		select {
		case e, ok := <-wt.ch:
			if !ok {
				return
			}
			if _, err := w.Write(e.body); err != nil {
				return
			}
			// Write what is queued before flushing: a burst goes out in
			// few packets.
			for more := true; more; {
				select {
				case e, ok := <-wt.ch:
					if !ok {
						return
					}
					if _, err := w.Write(e.body); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if fl != nil {
				fl.Flush()
			}
		case <-req.Context().Done():
			return
		}
	}
}

func watchEvent(typ string, o map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "object": o})
	return append(b, '\n')
}

func statusObject(code int, reason, msg string) map[string]any {
	return map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": msg, "reason": reason, "code": code}
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, statusObject(code, reason, msg))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// clone deep-copies a JSON object, numbers kept as written.
func clone(o map[string]any) map[string]any {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err) // objects are JSON by construction
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out map[string]any
	if err := d.Decode(&out); err != nil && err != io.EOF {
		panic(err)
	}
	return out
}
