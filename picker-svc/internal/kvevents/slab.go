package kvevents

// slab holds values of T at stable uint32 indexes in fixed-size chunks, so
// growing never copies (or doubles) what is there, and freed indexes are
// reused. Index noRec is never handed out.
type slab[T any] struct {
	chunks [][]T
	n      uint32   // indexes handed out so far (the high-water mark)
	free   []uint32 // released indexes, reused first
}

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
	chunkMask = chunkLen - 1
	noRec     = ^uint32(0)
)

func (s *slab[T]) at(i uint32) *T { return &s.chunks[i>>chunkBits][i&chunkMask] }

func (s *slab[T]) alloc() uint32 {
	if k := len(s.free); k > 0 {
		i := s.free[k-1]
		s.free = s.free[:k-1]
		return i
	}
	if int(s.n>>chunkBits) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, chunkLen))
	}
	i := s.n
	s.n++
	return i
}

func (s *slab[T]) release(i uint32) {
	var zero T
	*s.at(i) = zero
	s.free = append(s.free, i)
}

// live is how many indexes are in use.
func (s *slab[T]) live() int { return int(s.n) - len(s.free) }
