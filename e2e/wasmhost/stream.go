package wasmhost

import (
	"context"
	"errors"
	"strings"
)

// LocalReply is a response the filter generated (proxy_send_local_response).
type LocalReply struct {
	Status  int
	Details string
	Body    []byte
	Headers [][2]string
}

// Stream is one HTTP stream through the filter. The proxy drives it in
// Envoy's order; every method serialises on the VM.
type Stream struct {
	vm *VM
	id uint32

	// ReqHeaders and RespHeaders are the maps as the filter left them.
	ReqHeaders, RespHeaders         [][2]string
	reqTrailers, respTrailers       [][2]string
	reqBuf, respBuf                 []byte // data buffered by the host while the filter pauses
	reqHeadersSent, respHeadersSent bool

	reqPaused  bool // the request path waits for proxy_continue_stream
	respPaused bool
	state      map[string]string
	localReply *LocalReply
	reset      bool
	trapped    error
	done       bool
	wake       chan struct{}
}

// NewStream creates the stream's context in the guest.
func (vm *VM) NewStream() (*Stream, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil, ErrClosed
	}
	vm.nextID++
	s := &Stream{vm: vm, id: vm.nextID, state: map[string]string{}, wake: make(chan struct{}, 1)}
	vm.streams[s.id] = s
	if _, err := vm.call(vm.fns.contextCreate, uint64(s.id), uint64(vm.root)); err != nil {
		delete(vm.streams, s.id)
		return nil, err
	}
	return s, nil
}

// AllowsBodyWhileHeadersPaused reports the allow_on_headers_stop_iteration
// flag: without it Envoy withholds body callbacks while headers are paused.
func (vm *VM) AllowsBodyWhileHeadersPaused() bool { return vm.cfg.AllowOnHeadersStopIteration }

func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Stream) trap(err error) {
	s.trapped = err
	s.signal()
}

func (s *Stream) resumeRequest() {
	if s.reqPaused {
		s.reqPaused = false
		s.reqHeadersSent = true
		s.signal()
	}
}

func (s *Stream) resumeResponse() {
	if s.respPaused {
		s.respPaused = false
		s.signal()
	}
}

// callback runs one stream callback with the stream as effective context.
func (s *Stream) callback(fn func() (uint64, error)) (Action, error) {
	vm := s.vm
	if vm.closed {
		return Continue, ErrClosed
	}
	if s.done {
		return Continue, errors.New("wasmhost: stream already done")
	}
	vm.effective = s.id
	r, err := fn()
	if err != nil {
		s.trapped = err
		return Continue, err
	}
	return Action(r), nil
}

func lower(h [][2]string) [][2]string {
	out := make([][2]string, len(h))
	for i, kv := range h {
		out[i] = [2]string{strings.ToLower(kv[0]), kv[1]}
	}
	return out
}

// RequestHeaders delivers the request headers. Pause holds the request
// until the filter resumes it (see WaitRequest).
func (s *Stream) RequestHeaders(h [][2]string, endOfStream bool) (Action, error) {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.ReqHeaders = lower(h)
	a, err := s.callback(func() (uint64, error) {
		return vm.call(vm.fns.reqHeaders, uint64(s.id), uint64(len(h)), b2u(endOfStream))
	})
	if a == Pause && err == nil && s.localReply == nil {
		s.reqPaused = true
	} else {
		s.reqHeadersSent = true
	}
	return a, err
}

// RequestBody delivers a chunk. Envoy buffers while the filter pauses: the
// filter sees everything buffered so far. On Continue the buffer (as the
// filter left it) is released and returned.
func (s *Stream) RequestBody(chunk []byte, endOfStream bool) (Action, []byte, error) {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.reqBuf = append(s.reqBuf, chunk...)
	a, err := s.callback(func() (uint64, error) {
		return vm.call(vm.fns.reqBody, uint64(s.id), uint64(len(s.reqBuf)), b2u(endOfStream))
	})
	if a == Pause && err == nil && s.localReply == nil {
		s.reqPaused = true
		return a, nil, nil
	}
	// Continuing from a body callback also releases paused headers.
	s.reqPaused, s.reqHeadersSent = false, true
	out := s.reqBuf
	s.reqBuf = nil
	return a, out, err
}

// WaitRequest blocks until the filter resumes the request (returning the
// buffered body as the filter left it), answers it locally, or ctx ends. It
// returns at once if the request is not paused, so callers always call it
// after the last body chunk: a callout may resume the request before they
// look, and the buffered body must still be collected.
func (s *Stream) WaitRequest(ctx context.Context) ([]byte, error) {
	for {
		s.vm.mu.Lock()
		switch {
		case s.trapped != nil:
			err := s.trapped
			s.vm.mu.Unlock()
			return nil, err
		case s.localReply != nil, s.reset:
			s.vm.mu.Unlock()
			return nil, nil
		case !s.reqPaused:
			out := s.reqBuf
			s.reqBuf = nil
			s.vm.mu.Unlock()
			return out, nil
		}
		s.vm.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ResponseHeaders delivers the response headers.
func (s *Stream) ResponseHeaders(h [][2]string, endOfStream bool) (Action, error) {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.RespHeaders = lower(h)
	a, err := s.callback(func() (uint64, error) {
		return vm.call(vm.fns.respHeaders, uint64(s.id), uint64(len(h)), b2u(endOfStream))
	})
	if a == Pause && err == nil {
		s.respPaused = true
	} else {
		s.respHeadersSent = true
	}
	return a, err
}

// ResponseBody delivers a response chunk and returns what to send on.
func (s *Stream) ResponseBody(chunk []byte, endOfStream bool) (Action, []byte, error) {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.respBuf = append(s.respBuf, chunk...)
	a, err := s.callback(func() (uint64, error) {
		return vm.call(vm.fns.respBody, uint64(s.id), uint64(len(s.respBuf)), b2u(endOfStream))
	})
	if a == Pause && err == nil {
		s.respPaused = true
		return a, nil, nil
	}
	s.respPaused, s.respHeadersSent = false, true
	out := s.respBuf
	s.respBuf = nil
	return a, out, err
}

// LocalReply returns the filter's local reply, if it sent one.
func (s *Stream) LocalReply() *LocalReply {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.localReply
}

// Done ends the stream (proxy_on_log, then proxy_on_delete) and returns
// its filter state, keyed "wasm.<key>" as Envoy's FILTER_STATE sees it.
func (s *Stream) Done() map[string]string {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if s.done {
		return s.stateCopy()
	}
	if !vm.closed {
		vm.effective = s.id
		_, _ = vm.call(vm.fns.log, uint64(s.id))
		_, _ = vm.call(vm.fns.del, uint64(s.id))
	}
	s.done = true
	delete(vm.streams, s.id)
	return s.stateCopy()
}

func (s *Stream) stateCopy() map[string]string {
	out := make(map[string]string, len(s.state))
	for k, v := range s.state {
		out["wasm."+k] = v
	}
	return out
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
