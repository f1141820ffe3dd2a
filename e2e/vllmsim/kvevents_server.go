package vllmsim

import (
	"encoding/json"
	"io"
	"net/http"
)

func (s *Server) publisher() *kvPublisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kvPub
}

// KVEventsEndpoint is the address a subscriber dials for this server's KV
// events once it started ("tcp://127.0.0.1:5557"; a wildcard host reads as
// 127.0.0.1), or "" when events are off or the publisher connects instead.
func (s *Server) KVEventsEndpoint() string {
	if p := s.publisher(); p != nil {
		return p.endpoint()
	}
	return ""
}

// KVEventsReplayEndpoint is the replay socket's dialable address, or "".
func (s *Server) KVEventsReplayEndpoint() string {
	if p := s.publisher(); p != nil {
		return p.replayEndpoint()
	}
	return ""
}

// KVEventsSubscribed reports whether a subscription reached the publisher.
// Until one has, ZeroMQ drops what is published (its "slow joiner"): tests
// wait for this before sending the requests whose events they expect.
func (s *Server) KVEventsSubscribed() bool {
	p := s.publisher()
	return p != nil && p.subscribed()
}

// DropKVEvents makes the next n KV event batches go missing on the PUB
// socket, as if lost on the way, while they keep their sequence numbers and
// stay replayable: a sequence gap on demand.
func (s *Server) DropKVEvents(n int) error {
	p := s.publisher()
	if p == nil {
		return errNoKVEvents
	}
	p.dropNext(n)
	return nil
}

// dropKVEventsHandler serves POST /sim/kv-events/drop {"batches": n}.
func (s *Server) dropKVEventsHandler(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Batches *int `json:"batches"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.Batches == nil || *req.Batches < 0 {
		s.writeError(w, errBadRequest(`want {"batches": n} with n >= 0`))
		return
	}
	if err := s.DropKVEvents(*req.Batches); err != nil {
		s.writeError(w, errBadRequest("%v", err))
		return
	}
	w.WriteHeader(http.StatusOK)
}
