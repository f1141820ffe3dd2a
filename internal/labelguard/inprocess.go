package labelguard

import (
	"bytes"
	"sync"
)

// InProcess is Shared in process memory: the guard's one set, with
// compare-and-swap, for a service that is one process (the picker).
type InProcess struct {
	mu  sync.Mutex
	v   []byte
	cas uint32
}

func (s *InProcess) Get() ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.v), s.cas, s.v != nil, nil
}

func (s *InProcess) Set(v []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cas != 0 && cas != s.cas {
		return ErrCasMismatch
	}
	s.v, s.cas = bytes.Clone(v), s.cas+1
	return nil
}
